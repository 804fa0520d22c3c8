// Chat sessions on one LocalHub driven by fuzzed byte chunks: several clients, data split at
// fuzzed points, clients dropped at fuzzed moments. Must never crash, never consume more than
// it was given, never keep more than ~4 KiB of partial line, and never send to a closed peer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "protocols/chat.hpp"
#include "reactor/local_hub.hpp"

namespace {

class Peer final : public reactor::Peer {
 public:
  void send(std::span<const std::byte> bytes) override {
    if (closed) std::abort();  // a hub or session sent to a peer that is gone
    sent += bytes.size();
  }
  using reactor::Peer::send;
  void close() override { close_requested = true; }
  void shutdown_write() override {}
  std::size_t buffered() const override { return 0; }
  std::string remote() const override { return "tcp://127.0.0.1:1"; }
  std::error_code send_file(int, std::uint64_t, std::uint64_t) override { return {}; }
  reactor::TimerId start_timer(std::chrono::milliseconds, std::chrono::milliseconds) override {
    return reactor::kNoTimer;
  }
  bool cancel_timer(reactor::TimerId) override { return false; }
  std::size_t sent = 0;
  bool close_requested = false;
  bool closed = false;
};

struct Client {
  std::unique_ptr<reactor::Session> session;
  Peer peer;
  std::string pending;
  bool open = false;
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  reactor::LocalHub hub;
  reactor::protocols::ChatProtocol protocol;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 4; ++i) {
    auto c = std::make_unique<Client>();
    c->session = protocol.open(hub);
    c->session->on_open(c->peer);
    c->open = true;
    clients.push_back(std::move(c));
  }
  auto close_client = [&](Client& c, std::error_code why) {
    if (!c.open) return;
    c.open = false;
    c.session->on_close(why);
    hub.forget(c.peer);
    c.peer.closed = true;
  };
  std::size_t i = 0;
  while (i + 2 <= size) {
    std::uint8_t op = data[i];
    std::size_t len = data[i + 1];
    i += 2;
    if (len > size - i) len = size - i;
    Client& c = *clients[op % clients.size()];
    if (!c.open) {
      i += len;
      continue;
    }
    if ((op & 0xf0) == 0xf0) {  // the transport goes away, maybe as "too slow"
      close_client(c, (op & 1) ? std::error_code(reactor::Errc::too_slow) : std::error_code());
      continue;
    }
    c.pending.append(reinterpret_cast<const char*>(data + i), len);
    i += len;
    std::size_t consumed = c.session->on_data(c.peer, reactor::as_bytes(c.pending));
    if (consumed > c.pending.size()) std::abort();
    c.pending.erase(0, consumed);
    if (c.pending.size() > 64 * 1024) std::abort();  // unbounded buffering of a partial line
    if (c.peer.close_requested) close_client(c, {});
  }
  for (auto& c : clients) close_client(*c, {});
  return 0;
}
