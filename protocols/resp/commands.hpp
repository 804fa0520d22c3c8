// The command table and its dispatcher: arity, unknown-command, OOM and pub/sub-context checks
// in Redis's order and wording, then the command itself appends its reply to `out`.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "protocols/resp/server_state.hpp"
#include "reactor/session.hpp"

namespace reactor::protocols::resp {

struct CommandContext {
  ServerState& server;
  Hub& hub;
  Peer& peer;
  ClientState& client;
  std::string& out;      // replies for this batch
  std::string& scratch;  // reusable value buffer
  std::int64_t now;      // ms since the epoch
};

using Args = std::span<const std::string_view>;

// Runs one request (args non-empty) and appends exactly one reply (SUBSCRIBE: one per channel).
void execute(CommandContext& ctx, Args args);

// How many commands the table has (COMMAND COUNT).
std::size_t command_count() noexcept;

}  // namespace reactor::protocols::resp
