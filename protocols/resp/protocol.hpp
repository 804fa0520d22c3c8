// resp: a Redis-compatible (RESP2) in-memory server written against the public plugin API only.
// Configuration (registry args, comma-separated): maxmemory=BYTES (k/m/g suffixes, 0 = none),
// proto-max-bulk-len=BYTES, max-multibulk-len=N. See docs/resp.md.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "protocols/resp/server_state.hpp"
#include "reactor/session.hpp"

namespace reactor::protocols {

// Parses "maxmemory=100mb,proto-max-bulk-len=1048576"; false with a reason in `error`.
bool parse_resp_config(std::string_view args, resp::RespConfig& config, std::string& error);

class RespProtocol final : public Protocol {
 public:
  explicit RespProtocol(resp::RespConfig config = {}) : state_(std::move(config)) {}
  std::unique_ptr<Session> open(Hub& hub) override;
  // Room for the biggest bulk value plus its request.
  std::size_t max_input() const override;
  std::string last_words(std::error_code reason) const override;
  // Tests replace the clock to move time.
  resp::ServerState& state() noexcept { return state_; }

 private:
  resp::ServerState state_;
};

inline constexpr ProtocolInfo kRespInfo{
    "resp", "Redis-compatible in-memory store (RESP2): redis-cli, redis-benchmark, clients",
    kTcp | kUnixStream, true, true};

std::unique_ptr<Protocol> make_resp(std::string_view args, std::string& error);

}  // namespace reactor::protocols
