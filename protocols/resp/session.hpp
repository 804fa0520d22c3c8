// One resp connection: parses pipelined requests, runs them against the shared server state,
// and sends all replies of a batch with one Peer::send. A protocol error is answered, then the
// connection closes, as in Redis. One session at a time holds the store's sweep timer.
#pragma once

#include <string>

#include "protocols/resp/commands.hpp"
#include "protocols/resp/parser.hpp"
#include "protocols/resp/server_state.hpp"
#include "reactor/session.hpp"

namespace reactor::protocols::resp {

class RespSession final : public Session {
 public:
  RespSession(ServerState& server, Hub& hub);

  void on_open(Peer& peer) override;
  std::size_t on_data(Peer& peer, std::span<const std::byte> bytes) override;
  void on_timer(Peer& peer, TimerId id) override;
  void on_close(std::error_code reason) override;

 private:
  void try_claim_sweeper(Peer& peer);
  void flush(Peer& peer);

  ServerState& server_;
  Hub& hub_;
  RequestParser parser_;
  ClientState client_;
  Peer* peer_ = nullptr;  // from on_open; only a Hub key once on_close starts
  std::string out_;       // replies of this batch
  std::string scratch_;   // values read from the store
  TimerId sweep_timer_ = kNoTimer;
  bool timers_unavailable_ = false;
  bool closing_ = false;
};

}  // namespace reactor::protocols::resp
