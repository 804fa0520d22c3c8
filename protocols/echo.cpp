#include "protocols/echo.hpp"

#include <mutex>
#include <new>

#include "reactor/slab.hpp"

namespace reactor::protocols {
namespace {

struct SessionPool {
  std::mutex mutex;
  Slab slab{sizeof(EchoSession)};
};

// Never destroyed: a session may outlive static destruction (a thread still closing at exit).
SessionPool& pool() {
  static SessionPool* const instance = new SessionPool;
  return *instance;
}

// Makes the pool and its first block now, in the process that creates the protocol: a fork
// model's child then takes its session from a block its parent mapped (one copy-on-write page)
// instead of constructing the pool and mapping a block of its own for a single session.
void prime_pool() {
  SessionPool& sessions = pool();
  std::lock_guard lock(sessions.mutex);
  sessions.slab.deallocate(sessions.slab.allocate());  // the emptied block stays, as the spare
}

}  // namespace

void* EchoSession::operator new(std::size_t size) {
  void* p = nullptr;
  if (size == sizeof(EchoSession)) {
    SessionPool& sessions = pool();
    std::lock_guard lock(sessions.mutex);
    p = sessions.slab.allocate();
  }
  if (p == nullptr) throw std::bad_alloc();
  return p;
}

void EchoSession::operator delete(void* p) noexcept {
  if (p == nullptr) return;
  SessionPool& sessions = pool();
  std::lock_guard lock(sessions.mutex);
  sessions.slab.deallocate(p);
}

std::size_t EchoSession::on_data(Peer& peer, std::span<const std::byte> bytes) {
  peer.send(bytes);
  return bytes.size();
}

std::unique_ptr<Session> EchoProtocol::open(Hub&) {
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
