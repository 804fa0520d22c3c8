#include "protocols/resp/session.hpp"

#include "protocols/resp/reply.hpp"

namespace reactor::protocols::resp {
namespace {

// Replies are handed to the Peer at least this often within one big batch.
constexpr std::size_t kFlushAt = 64 * 1024;

}  // namespace

RespSession::RespSession(ServerState& server, Hub& hub)
    : server_(server), hub_(hub), parser_(server.config.limits) {
  client_.id = server.next_client_id.fetch_add(1, std::memory_order_relaxed);
}

void RespSession::on_open(Peer& peer) {
  peer_ = &peer;
  try_claim_sweeper(peer);
}

void RespSession::try_claim_sweeper(Peer& peer) {
  if (server_.sweeper_claimed.exchange(true, std::memory_order_acq_rel)) return;
  sweep_timer_ = peer.start_timer(server_.config.sweep_period, server_.config.sweep_period);
  if (sweep_timer_ == kNoTimer) {  // this transport has no timers: let another session try
    timers_unavailable_ = true;
    server_.sweeper_claimed.store(false, std::memory_order_release);
  }
}

std::size_t RespSession::on_data(Peer& peer, std::span<const std::byte> bytes) {
  if (closing_) return bytes.size();
  if (sweep_timer_ == kNoTimer && !timers_unavailable_ &&
      !server_.sweeper_claimed.load(std::memory_order_relaxed)) {
    try_claim_sweeper(peer);
  }
  const std::string_view input = as_text(bytes);
  CommandContext ctx{server_, hub_, peer, client_, out_, scratch_, server_.clock()};
  std::size_t pos = 0;
  while (pos < input.size()) {
    const ParseResult r = parser_.parse(input.substr(pos));
    if (r.status == ParseStatus::incomplete) break;
    if (r.status == ParseStatus::error) {
      reply_error(out_, std::string("ERR ") + std::string(r.error));
      flush(peer);
      peer.close();
      closing_ = true;
      return bytes.size();
    }
    pos += r.consumed;
    const auto& args = parser_.args();
    if (args.empty()) continue;
    execute(ctx, args);
    if (client_.quit) {
      flush(peer);
      peer.close();
      closing_ = true;
      return bytes.size();
    }
    if (out_.size() >= kFlushAt) flush(peer);
  }
  flush(peer);
  return pos;
}

void RespSession::flush(Peer& peer) {
  if (out_.empty()) return;
  peer.send(as_bytes(out_));
  out_.clear();
}

void RespSession::on_timer(Peer&, TimerId id) {
  if (id != sweep_timer_) return;
  const std::size_t n = server_.store->sweep(server_.clock());
  server_.expired_keys.fetch_add(n, std::memory_order_relaxed);
}

void RespSession::on_close(std::error_code) {
  if (sweep_timer_ != kNoTimer) {
    sweep_timer_ = kNoTimer;
    server_.sweeper_claimed.store(false, std::memory_order_release);
  }
  if (peer_ != nullptr && !client_.channels.empty()) {
    for (const auto& channel : client_.channels) server_.channels.remove(channel);
    client_.channels.clear();
    hub_.forget(*peer_);
  }
}

}  // namespace reactor::protocols::resp
