// Key and string commands: GET SET GETSET DEL EXISTS INCR.. APPEND STRLEN MGET MSET, expiry
// (EXPIRE PEXPIRE TTL PTTL PERSIST), TYPE KEYS DBSIZE FLUSHALL/FLUSHDB.
#include <limits>
#include <vector>

#include "protocols/resp/handlers.hpp"
#include "protocols/resp/reply.hpp"

namespace reactor::protocols::resp::handlers {
namespace {

constexpr std::int64_t kMax = std::numeric_limits<std::int64_t>::max();

bool equals_nocase(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != b[i]) return false;
  }
  return true;
}

void reply_invalid_expire(std::string& out, std::string_view command) {
  std::string text = "ERR invalid expire time in '";
  text += command;
  text += "' command";
  reply_error(out, text);
}

// A relative time in `unit_ms` units from `text` to an absolute deadline; false after replying.
bool deadline_from(CommandContext& ctx, std::string_view text, std::int64_t unit_ms, bool relative,
                   std::string_view command, bool must_be_positive, std::int64_t& deadline) {
  std::int64_t value = 0;
  if (!parse_int64(text, value)) {
    reply_not_integer(ctx.out);
    return false;
  }
  if ((must_be_positive && value <= 0) || value > kMax / unit_ms || value < -(kMax / unit_ms)) {
    reply_invalid_expire(ctx.out, command);
    return false;
  }
  deadline = value * unit_ms;
  if (relative && __builtin_add_overflow(deadline, ctx.now, &deadline)) {
    reply_invalid_expire(ctx.out, command);
    return false;
  }
  return true;
}

void increment_by(CommandContext& ctx, std::string_view key, std::int64_t delta) {
  std::int64_t result = 0;
  switch (ctx.server.store->increment(key, delta, ctx.now, result)) {
    case IncrStatus::ok:
      return reply_int(ctx.out, result);
    case IncrStatus::not_integer:
      return reply_not_integer(ctx.out);
    case IncrStatus::overflow:
      return reply_error(ctx.out, "ERR increment or decrement would overflow");
  }
}

void expire_with_unit(CommandContext& ctx, Args args, std::int64_t unit_ms,
                      std::string_view command) {
  std::int64_t deadline = 0;
  if (!deadline_from(ctx, args[2], unit_ms, true, command, false, deadline)) return;
  reply_int(ctx.out, ctx.server.store->expire_at(args[1], deadline, ctx.now) ? 1 : 0);
}

}  // namespace

void reply_arity(std::string& out, std::string_view name) {
  std::string text = "ERR wrong number of arguments for '";
  text += name;
  text += "' command";
  reply_error(out, text);
}

void reply_not_integer(std::string& out) {
  reply_error(out, "ERR value is not an integer or out of range");
}

void get(CommandContext& ctx, Args args) {
  if (ctx.server.store->get(args[1], ctx.now, ctx.scratch)) {
    reply_bulk(ctx.out, ctx.scratch);
  } else {
    reply_nil(ctx.out);
  }
}

// SET key value [NX|XX] [EX s|PX ms|EXAT ts|PXAT ms-ts]
void set(CommandContext& ctx, Args args) {
  SetOptions options;
  bool has_expire = false;
  for (std::size_t i = 3; i < args.size(); ++i) {
    const std::string_view a = args[i];
    const bool has_next = i + 1 < args.size();
    if (equals_nocase(a, "nx") && options.condition != SetOptions::Condition::if_present) {
      options.condition = SetOptions::Condition::if_absent;
    } else if (equals_nocase(a, "xx") && options.condition != SetOptions::Condition::if_absent) {
      options.condition = SetOptions::Condition::if_present;
    } else if (!has_expire && has_next &&
               (equals_nocase(a, "ex") || equals_nocase(a, "px") || equals_nocase(a, "exat") ||
                equals_nocase(a, "pxat"))) {
      const bool seconds = equals_nocase(a, "ex") || equals_nocase(a, "exat");
      const bool relative = equals_nocase(a, "ex") || equals_nocase(a, "px");
      if (!deadline_from(ctx, args[++i], seconds ? 1000 : 1, relative, "set", true,
                         options.expire_at_ms)) {
        return;
      }
      has_expire = true;
    } else {
      return reply_error(ctx.out, "ERR syntax error");
    }
  }
  if (ctx.server.store->set(args[1], args[2], options, ctx.now)) {
    reply_ok(ctx.out);
  } else {
    reply_nil(ctx.out);
  }
}

void getset(CommandContext& ctx, Args args) {
  bool had_old = false;
  ctx.server.store->set(args[1], args[2], {}, ctx.now, &ctx.scratch, &had_old);
  if (had_old) {
    reply_bulk(ctx.out, ctx.scratch);
  } else {
    reply_nil(ctx.out);
  }
}

void del(CommandContext& ctx, Args args) {
  reply_int(ctx.out, static_cast<std::int64_t>(ctx.server.store->remove(args.subspan(1), ctx.now)));
}

void exists(CommandContext& ctx, Args args) {
  reply_int(ctx.out,
            static_cast<std::int64_t>(ctx.server.store->count_existing(args.subspan(1), ctx.now)));
}

void incr(CommandContext& ctx, Args args) {
  increment_by(ctx, args[1], 1);
}
void decr(CommandContext& ctx, Args args) {
  increment_by(ctx, args[1], -1);
}

void incrby(CommandContext& ctx, Args args) {
  std::int64_t delta = 0;
  if (!parse_int64(args[2], delta)) return reply_not_integer(ctx.out);
  increment_by(ctx, args[1], delta);
}

void decrby(CommandContext& ctx, Args args) {
  std::int64_t delta = 0;
  if (!parse_int64(args[2], delta)) return reply_not_integer(ctx.out);
  if (delta == std::numeric_limits<std::int64_t>::min()) {
    return reply_error(ctx.out, "ERR decrement would overflow");
  }
  increment_by(ctx, args[1], -delta);
}

void append(CommandContext& ctx, Args args) {
  reply_int(ctx.out,
            static_cast<std::int64_t>(ctx.server.store->append(args[1], args[2], ctx.now)));
}

void strlen(CommandContext& ctx, Args args) {
  reply_int(ctx.out, static_cast<std::int64_t>(ctx.server.store->length(args[1], ctx.now)));
}

void mget(CommandContext& ctx, Args args) {
  reply_array(ctx.out, args.size() - 1);
  for (std::size_t i = 1; i < args.size(); ++i) {
    if (ctx.server.store->get(args[i], ctx.now, ctx.scratch)) {
      reply_bulk(ctx.out, ctx.scratch);
    } else {
      reply_nil(ctx.out);
    }
  }
}

void mset(CommandContext& ctx, Args args) {
  if (args.size() % 2 == 0) return reply_arity(ctx.out, "mset");
  ctx.server.store->set_many(args.subspan(1), ctx.now);
  reply_ok(ctx.out);
}

void expire(CommandContext& ctx, Args args) {
  expire_with_unit(ctx, args, 1000, "expire");
}
void pexpire(CommandContext& ctx, Args args) {
  expire_with_unit(ctx, args, 1, "pexpire");
}

void ttl(CommandContext& ctx, Args args) {
  const std::int64_t ms = ctx.server.store->ttl_ms(args[1], ctx.now);
  reply_int(ctx.out, ms < 0 ? ms : (ms + 500) / 1000);
}

void pttl(CommandContext& ctx, Args args) {
  reply_int(ctx.out, ctx.server.store->ttl_ms(args[1], ctx.now));
}

void persist(CommandContext& ctx, Args args) {
  reply_int(ctx.out, ctx.server.store->persist(args[1], ctx.now) ? 1 : 0);
}

void type(CommandContext& ctx, Args args) {
  const std::string_view key = args[1];
  reply_simple(ctx.out,
               ctx.server.store->count_existing({&key, 1}, ctx.now) != 0 ? "string" : "none");
}

void keys(CommandContext& ctx, Args args) {
  std::vector<std::string> found;
  ctx.server.store->keys(args[1], ctx.now, found);
  reply_array(ctx.out, found.size());
  for (const auto& key : found) reply_bulk(ctx.out, key);
}

void dbsize(CommandContext& ctx, Args) {
  reply_int(ctx.out, static_cast<std::int64_t>(ctx.server.store->size().keys));
}

// FLUSHALL / FLUSHDB [ASYNC|SYNC]
void flushall(CommandContext& ctx, Args args) {
  if (args.size() > 2 ||
      (args.size() == 2 && !equals_nocase(args[1], "async") && !equals_nocase(args[1], "sync"))) {
    return reply_error(ctx.out, "ERR syntax error");
  }
  ctx.server.store->clear();
  reply_ok(ctx.out);
}

}  // namespace reactor::protocols::resp::handlers
