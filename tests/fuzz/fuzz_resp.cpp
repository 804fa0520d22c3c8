// The resp parser and sessions driven by fuzzed bytes. First the parser alone: it must never
// consume more than it was given, and a request it completes in a prefix must be the same
// request when more bytes follow. Then three sessions sharing one store and one LocalHub get
// the input in fuzzed chunks (pub/sub crosses between them): no crash, no over-consumption, no
// unbounded buffering, no send to a closed peer.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "protocols/resp/parser.hpp"
#include "protocols/resp/protocol.hpp"
#include "reactor/local_hub.hpp"

namespace {

namespace resp = reactor::protocols::resp;

class Peer final : public reactor::Peer {
 public:
  void send(std::span<const std::byte> bytes) override {
    if (closed) std::abort();
    sent += bytes.size();
  }
  using reactor::Peer::send;
  void close() override { close_requested = true; }
  void shutdown_write() override {}
  std::size_t buffered() const override { return 0; }
  std::string remote() const override { return "tcp://127.0.0.1:1"; }
  std::error_code send_file(int, std::uint64_t, std::uint64_t) override { return {}; }
  reactor::TimerId start_timer(std::chrono::milliseconds, std::chrono::milliseconds) override {
    return closed ? reactor::kNoTimer : ++timers;
  }
  bool cancel_timer(reactor::TimerId) override { return false; }
  std::size_t sent = 0;
  reactor::TimerId timers = 0;
  bool close_requested = false;
  bool closed = false;
};

struct Client {
  std::unique_ptr<reactor::Session> session;
  Peer peer;
  std::string pending;
  bool open = false;
};

std::int64_t g_now = 1'000'000;
std::int64_t fuzz_clock() {
  return g_now;
}

void check_parser(std::string_view input) {
  resp::ParserLimits limits;
  limits.max_inline = 256;
  limits.max_bulk = 1024;
  limits.max_multibulk = 64;
  resp::RequestParser whole(limits), prefix(limits);
  const auto full = whole.parse(input);
  if (full.consumed > input.size()) std::abort();
  if (full.status != resp::ParseStatus::complete) return;
  // The same request read from exactly its own bytes.
  const auto again = prefix.parse(input.substr(0, full.consumed));
  if (again.status != resp::ParseStatus::complete || again.consumed != full.consumed ||
      again.error != full.error || prefix.args() != whole.args()) {
    std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  check_parser(std::string_view(reinterpret_cast<const char*>(data), size));

  resp::RespConfig config;
  config.limits.max_inline = 1024;
  config.limits.max_bulk = 4096;
  config.limits.max_multibulk = 256;
  config.maxmemory = 64 * 1024;
  reactor::protocols::RespProtocol protocol(config);
  protocol.state().clock = &fuzz_clock;
  reactor::LocalHub hub;
  std::vector<std::unique_ptr<Client>> clients;
  for (int i = 0; i < 3; ++i) {
    auto c = std::make_unique<Client>();
    c->session = protocol.open(hub);
    c->session->on_open(c->peer);
    c->open = true;
    clients.push_back(std::move(c));
  }
  auto close_client = [&](Client& c) {
    if (!c.open) return;
    c.open = false;
    c.session->on_close({});
    hub.forget(c.peer);
    c.peer.closed = true;
  };
  std::size_t i = 0;
  while (i + 2 <= size) {
    const std::uint8_t op = data[i];
    std::size_t len = data[i + 1];
    i += 2;
    if (len > size - i) len = size - i;
    Client& c = *clients[op % clients.size()];
    if (!c.open) {
      i += len;
      continue;
    }
    if ((op & 0xf0) == 0xf0) {
      close_client(c);
      continue;
    }
    if ((op & 0xf0) == 0xe0) {  // time passes and the sweep timer fires
      g_now += op & 0x0f;
      c.session->on_timer(c.peer, 1);
      continue;
    }
    c.pending.append(reinterpret_cast<const char*>(data + i), len);
    i += len;
    const std::size_t consumed = c.session->on_data(c.peer, reactor::as_bytes(c.pending));
    if (consumed > c.pending.size()) std::abort();
    c.pending.erase(0, consumed);
    if (c.pending.size() > protocol.max_input()) std::abort();
    if (c.peer.close_requested) close_client(c);
  }
  for (auto& c : clients) close_client(*c);
  return 0;
}
