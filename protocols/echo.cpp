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
  return std::make_unique<EchoProtocol>();
}

}  // namespace reactor::protocols
