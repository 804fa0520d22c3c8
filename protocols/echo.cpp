#include "protocols/echo.hpp"

#include <cstddef>
#include <mutex>
#include <new>

#include "reactor/hot.hpp"
#include "reactor/slab.hpp"

namespace reactor::protocols {
namespace {

// The lock, the slab and the first sessions share one page, made when the protocol is: a process
// that opens a few sessions writes one page for them, not two (the pool's and the slab block's).
// Beyond the first few hundred, sessions come from the slab, still 8 bytes each. (A fork model's
// child takes none of these: its session is in the storage its driver lends.)
struct alignas(4096) SessionPool {
  static constexpr std::size_t kSlot = sizeof(EchoSession);
  static constexpr std::size_t kNearSlots =
      (4096 - sizeof(std::mutex) - sizeof(Slab) - 2 * sizeof(void*)) / kSlot - 1;

  std::mutex mutex;
  Slab slab{sizeof(EchoSession)};
  void* near_free = nullptr;  // freed slots of `near`, each holding the next one's address
  std::size_t near_carved = 0;
  alignas(alignof(EchoSession)) std::byte near[kNearSlots * kSlot];

  bool is_near(const void* p) const noexcept {
    const auto* b = static_cast<const std::byte*>(p);
    return b >= near && b < near + sizeof(near);
  }
  void* allocate() noexcept {
    if (!Slab::kCarves) return slab.allocate();  // sanitizers: every session its own allocation
    if (near_free != nullptr) {
      void* p = near_free;
      near_free = *static_cast<void**>(p);
      return p;
    }
    if (near_carved < kNearSlots) return near + kSlot * near_carved++;
    return slab.allocate();
  }
  void deallocate(void* p) noexcept {
    if (!is_near(p)) {
      slab.deallocate(p);
      return;
    }
    *static_cast<void**>(p) = near_free;
    near_free = p;
  }
};
static_assert(sizeof(SessionPool) == 4096);
static_assert(SessionPool::kSlot >= sizeof(void*));

// Never destroyed: a session may outlive static destruction (a thread still closing at exit).
SessionPool& pool() {
  static SessionPool* const instance = new SessionPool;
  return *instance;
}

// Makes the pool now, in the process that creates the protocol: a fork model's child then takes
// its session from the pool's page (one copy-on-write fault) instead of making the pool on a heap
// page of its own.
void prime_pool() {
  pool();
}

}  // namespace

REACTOR_HOT void* EchoSession::operator new(std::size_t size) {
  if (void* lent = SessionStorage::take(size, alignof(EchoSession))) return lent;
  void* p = nullptr;
  if (size == sizeof(EchoSession)) {
    SessionPool& sessions = pool();
    std::lock_guard lock(sessions.mutex);
    p = sessions.allocate();
  }
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

REACTOR_HOT void EchoSession::operator delete(void* p) noexcept {
  if (p == nullptr || SessionStorage::give_back(p)) return;
  SessionPool& sessions = pool();
  std::lock_guard lock(sessions.mutex);
  sessions.deallocate(p);
}

REACTOR_HOT std::size_t EchoSession::on_data(Peer& peer, std::span<const std::byte> bytes) {
  peer.send(bytes);
  return bytes.size();
}

REACTOR_HOT std::unique_ptr<Session> EchoProtocol::open(Hub&) {
  return std::make_unique<EchoSession>();
}

std::unique_ptr<Protocol> make_echo(std::string_view args, std::string& error) {
  if (!args.empty()) {
    error = "echo takes no arguments";
    return nullptr;
  }
  prime_pool();
  return std::make_unique<EchoProtocol>();
}

}  // namespace reactor::protocols
