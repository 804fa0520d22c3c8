#include "protocols/resp/commands.hpp"

#include <algorithm>
#include <array>

#include "protocols/resp/handlers.hpp"
#include "protocols/resp/reply.hpp"

namespace reactor::protocols::resp {
namespace {

enum Flags : unsigned {
  kNone = 0,
  kDenyOom = 1,   // refused when used memory > maxmemory
  kPubSubOk = 2,  // allowed while subscribed
};

struct Command {
  std::string_view name;  // lower case
  int arity;              // Redis's: N exactly, -N at least N (the name counts)
  unsigned flags;
  void (*run)(CommandContext&, Args);
};

// Sorted by name (COMMAND COUNT and docs read it in order).
constexpr Command kCommands[] = {
    {"append", 3, kDenyOom, &handlers::append},
    {"client", -2, kNone, &handlers::client},
    {"command", -1, kNone, &handlers::command},
    {"config", -2, kNone, &handlers::config},
    {"dbsize", 1, kNone, &handlers::dbsize},
    {"decr", 2, kDenyOom, &handlers::decr},
    {"decrby", 3, kDenyOom, &handlers::decrby},
    {"del", -2, kNone, &handlers::del},
    {"echo", 2, kNone, &handlers::echo},
    {"exists", -2, kNone, &handlers::exists},
    {"expire", 3, kNone, &handlers::expire},
    {"flushall", -1, kNone, &handlers::flushall},
    {"flushdb", -1, kNone, &handlers::flushall},
    {"get", 2, kNone, &handlers::get},
    {"getset", 3, kDenyOom, &handlers::getset},
    {"incr", 2, kDenyOom, &handlers::incr},
    {"incrby", 3, kDenyOom, &handlers::incrby},
    {"info", -1, kNone, &handlers::info},
    {"keys", 2, kNone, &handlers::keys},
    {"mget", -2, kNone, &handlers::mget},
    {"mset", -3, kDenyOom, &handlers::mset},
    {"persist", 2, kNone, &handlers::persist},
    {"pexpire", 3, kNone, &handlers::pexpire},
    {"ping", -1, kPubSubOk, &handlers::ping},
    {"pttl", 2, kNone, &handlers::pttl},
    {"publish", 3, kNone, &handlers::publish},
    {"quit", -1, kPubSubOk, &handlers::quit},
    {"select", 2, kNone, &handlers::select},
    {"set", -3, kDenyOom, &handlers::set},
    {"strlen", 2, kNone, &handlers::strlen},
    {"subscribe", -2, kPubSubOk, &handlers::subscribe},
    {"ttl", 2, kNone, &handlers::ttl},
    {"type", 2, kNone, &handlers::type},
    {"unsubscribe", -1, kPubSubOk, &handlers::unsubscribe},
};

constexpr bool sorted() {
  for (std::size_t i = 1; i < std::size(kCommands); ++i) {
    if (!(kCommands[i - 1].name < kCommands[i].name)) return false;
  }
  return true;
}
static_assert(sorted(), "kCommands must be sorted by name");

// Case-insensitive; a length and first-letter filter leaves about one full comparison.
const Command* lookup(std::string_view name) {
  if (name.empty()) return nullptr;
  const char first = (name[0] >= 'A' && name[0] <= 'Z') ? static_cast<char>(name[0] + 32) : name[0];
  for (const Command& c : kCommands) {
    if (c.name.size() != name.size() || c.name[0] != first) continue;
    std::size_t i = 1;
    for (; i < name.size(); ++i) {
      const char x = name[i];
      if (((x >= 'A' && x <= 'Z') ? static_cast<char>(x + 32) : x) != c.name[i]) break;
    }
    if (i == name.size()) return &c;
  }
  return nullptr;
}

// Redis: "unknown command 'FOO', with args beginning with: 'a' 'b' " (each arg quoted and
// followed by a space, the list cut near 128 bytes).
void reply_unknown(std::string& out, Args args) {
  std::string text = "ERR unknown command '";
  text.append(args[0].substr(0, 128));
  text += "', with args beginning with: ";
  std::size_t listed = 0;
  for (std::size_t i = 1; i < args.size() && listed < 128; ++i) {
    const std::size_t before = text.size();
    text += '\'';
    std::string_view arg = args[i].substr(0, 128 - listed);
    arg = arg.substr(0, std::min(arg.find('\0'), arg.size()));
    text += arg;
    text += "' ";
    listed += text.size() - before;
  }
  reply_error(out, text);
}

}  // namespace

std::size_t command_count() noexcept {
  return std::size(kCommands);
}

void execute(CommandContext& ctx, Args args) {
  const Command* command = lookup(args[0]);
  if (command == nullptr) return reply_unknown(ctx.out, args);
  const auto argc = static_cast<int>(args.size());
  if ((command->arity > 0 && argc != command->arity) || argc < -command->arity) {
    return handlers::reply_arity(ctx.out, command->name);
  }
  if ((command->flags & kDenyOom) != 0 && ctx.server.config.maxmemory != 0 &&
      ctx.server.store->used_memory() > ctx.server.config.maxmemory) {
    return reply_error(ctx.out, "OOM command not allowed when used memory > 'maxmemory'.");
  }
  if (!ctx.client.channels.empty() && (command->flags & kPubSubOk) == 0) {
    std::string text = "ERR Can't execute '";
    text += command->name;
    text +=
        "': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET are allowed in this "
        "context";
    return reply_error(ctx.out, text);
  }
  command->run(ctx, args);
}

}  // namespace reactor::protocols::resp
