// SUBSCRIBE / UNSUBSCRIBE / PUBLISH through the Hub: a channel is a Hub room; the message is
// encoded once as a RESP push ("message", channel, payload) and the Hub hands those bytes to
// every subscriber's Peer, on whatever connection or thread it lives.
#include <algorithm>

#include "protocols/resp/handlers.hpp"
#include "protocols/resp/reply.hpp"

namespace reactor::protocols::resp {

void ChannelCounts::add(std::string_view channel) {
  const std::lock_guard lock(mutex_);
  ++counts_[std::string(channel)];
}

void ChannelCounts::remove(std::string_view channel) {
  const std::lock_guard lock(mutex_);
  const auto it = counts_.find(std::string(channel));
  if (it != counts_.end() && --it->second == 0) counts_.erase(it);
}

std::size_t ChannelCounts::count(std::string_view channel) {
  const std::lock_guard lock(mutex_);
  const auto it = counts_.find(std::string(channel));
  return it == counts_.end() ? 0 : it->second;
}

namespace handlers {
namespace {

void reply_subscription(std::string& out, std::string_view kind, std::string_view channel,
                        std::size_t count, bool nil_channel = false) {
  reply_array(out, 3);
  reply_bulk(out, kind);
  if (nil_channel) {
    reply_nil(out);
  } else {
    reply_bulk(out, channel);
  }
  reply_int(out, static_cast<std::int64_t>(count));
}

void leave(CommandContext& ctx, std::string_view channel) {
  auto& channels = ctx.client.channels;
  const auto it = std::find(channels.begin(), channels.end(), channel);
  if (it != channels.end()) {
    ctx.hub.leave(channel, ctx.peer);
    ctx.server.channels.remove(channel);
    channels.erase(it);
  }
}

}  // namespace

void subscribe(CommandContext& ctx, Args args) {
  auto& channels = ctx.client.channels;
  for (std::size_t i = 1; i < args.size(); ++i) {
    const std::string_view channel = args[i];
    if (std::find(channels.begin(), channels.end(), channel) == channels.end()) {
      ctx.hub.join(channel, ctx.peer);
      ctx.server.channels.add(channel);
      channels.emplace_back(channel);
    }
    reply_subscription(ctx.out, "subscribe", channel, channels.size());
  }
}

void unsubscribe(CommandContext& ctx, Args args) {
  auto& channels = ctx.client.channels;
  if (args.size() == 1) {
    if (channels.empty()) return reply_subscription(ctx.out, "unsubscribe", {}, 0, true);
    while (!channels.empty()) {
      const std::string channel = channels.front();
      leave(ctx, channel);
      reply_subscription(ctx.out, "unsubscribe", channel, channels.size());
    }
    return;
  }
  for (std::size_t i = 1; i < args.size(); ++i) {
    leave(ctx, args[i]);
    reply_subscription(ctx.out, "unsubscribe", args[i], channels.size());
  }
}

void publish(CommandContext& ctx, Args args) {
  std::string message;
  reply_array(message, 3);
  reply_bulk(message, "message");
  reply_bulk(message, args[1]);
  reply_bulk(message, args[2]);
  const std::size_t receivers = ctx.server.channels.count(args[1]);
  if (receivers != 0) ctx.hub.publish(args[1], as_bytes(message), nullptr);
  reply_int(ctx.out, static_cast<std::int64_t>(receivers));
}

}  // namespace handlers
}  // namespace reactor::protocols::resp
