// Connection and server commands: PING ECHO SELECT QUIT, and what real clients ask on start:
// COMMAND (redis-cli), CONFIG GET (redis-benchmark), INFO, CLIENT SETNAME/GETNAME.
#include <unistd.h>

#include <array>
#include <string>

#include "protocols/resp/glob.hpp"
#include "protocols/resp/handlers.hpp"
#include "protocols/resp/reply.hpp"

namespace reactor::protocols::resp::handlers {
namespace {

bool equals_nocase(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char c = a[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != b[i]) return false;
  }
  return true;
}

void reply_unknown_subcommand(std::string& out, std::string_view sub, std::string_view command) {
  std::string text = "ERR unknown subcommand '";
  text.append(sub.substr(0, 128));
  text += "'. Try ";
  text += command;
  text += " HELP.";
  reply_error(out, text);
}

std::string number(std::uint64_t n) {
  return std::to_string(n);
}

}  // namespace

void ping(CommandContext& ctx, Args args) {
  if (args.size() > 2) return reply_arity(ctx.out, "ping");
  if (!ctx.client.channels.empty()) {  // RESP2 subscribers get an array
    reply_array(ctx.out, 2);
    reply_bulk(ctx.out, "pong");
    reply_bulk(ctx.out, args.size() == 2 ? args[1] : std::string_view{});
    return;
  }
  if (args.size() == 2) return reply_bulk(ctx.out, args[1]);
  ctx.out += "+PONG\r\n";
}

void echo(CommandContext& ctx, Args args) {
  reply_bulk(ctx.out, args[1]);
}

void select(CommandContext& ctx, Args args) {
  std::int64_t db = 0;
  if (!parse_int64(args[1], db)) return reply_not_integer(ctx.out);
  if (db != 0) return reply_error(ctx.out, "ERR DB index is out of range");
  reply_ok(ctx.out);
}

void quit(CommandContext& ctx, Args) {
  reply_ok(ctx.out);
  ctx.client.quit = true;
}

// COMMAND, COMMAND COUNT, COMMAND DOCS: enough for redis-cli (no hints, no docs).
void command(CommandContext& ctx, Args args) {
  if (args.size() == 1) return reply_array(ctx.out, 0);
  const std::string_view sub = args[1];
  if (equals_nocase(sub, "count")) {
    if (args.size() != 2) return reply_arity(ctx.out, "command|count");
    return reply_int(ctx.out, static_cast<std::int64_t>(command_count()));
  }
  if (equals_nocase(sub, "docs")) return reply_array(ctx.out, 0);
  if (equals_nocase(sub, "info")) {
    reply_array(ctx.out, args.size() - 2);
    for (std::size_t i = 2; i < args.size(); ++i) ctx.out += "*-1\r\n";
    return;
  }
  reply_unknown_subcommand(ctx.out, sub, "COMMAND");
}

// CONFIG GET pattern [pattern ...]: the parameters clients look at; CONFIG SET is not offered.
void config(CommandContext& ctx, Args args) {
  const std::string_view sub = args[1];
  if (!equals_nocase(sub, "get")) {
    if (equals_nocase(sub, "resetstat")) return reply_ok(ctx.out);
    return reply_unknown_subcommand(ctx.out, sub, "CONFIG");
  }
  if (args.size() < 3) return reply_arity(ctx.out, "config|get");
  const RespConfig& c = ctx.server.config;
  const std::array<std::pair<std::string_view, std::string>, 7> params = {{
      {"appendonly", "no"},
      {"databases", "1"},
      {"maxmemory", number(c.maxmemory)},
      {"maxmemory-policy", "noeviction"},
      {"proto-max-bulk-len", number(c.limits.max_bulk)},
      {"save", ""},
      {"timeout", "0"},
  }};
  std::string body;
  std::size_t found = 0;
  for (const auto& [name, value] : params) {
    for (std::size_t i = 2; i < args.size(); ++i) {
      if (glob_match(args[i], name, true)) {
        reply_bulk(body, name);
        reply_bulk(body, value);
        ++found;
        break;
      }
    }
  }
  reply_array(ctx.out, found * 2);
  ctx.out += body;
}

// INFO [section]: server, memory and keyspace.
void info(CommandContext& ctx, Args args) {
  bool server = true, memory = true, keyspace = true;
  if (args.size() > 1) {
    server = memory = keyspace = false;
    for (std::size_t i = 1; i < args.size(); ++i) {
      const std::string_view s = args[i];
      const bool all =
          equals_nocase(s, "all") || equals_nocase(s, "default") || equals_nocase(s, "everything");
      server = server || all || equals_nocase(s, "server");
      memory = memory || all || equals_nocase(s, "memory");
      keyspace = keyspace || all || equals_nocase(s, "keyspace");
    }
  }
  std::string text;
  if (server) {
    const std::int64_t uptime = (ctx.now - ctx.server.started_ms) / 1000;
    text += "# Server\r\nredis_version:7.0.0\r\nredis_mode:standalone\r\n";
    text += "server_name:reactor-resp\r\nos:Linux\r\narch_bits:64\r\nmultiplexing_api:epoll\r\n";
    text += "process_id:" + number(static_cast<std::uint64_t>(::getpid())) + "\r\n";
    text += "uptime_in_seconds:" + std::to_string(uptime) + "\r\n";
    text += "uptime_in_days:" + std::to_string(uptime / 86400) + "\r\n\r\n";
  }
  if (memory) {
    text += "# Memory\r\nused_memory:" + number(ctx.server.store->used_memory()) + "\r\n";
    text += "maxmemory:" + number(ctx.server.config.maxmemory) + "\r\n";
    text += "maxmemory_policy:noeviction\r\n\r\n";
  }
  if (keyspace) {
    text += "# Keyspace\r\n";
    const KeyspaceSize size = ctx.server.store->size();
    if (size.keys != 0) {
      text +=
          "db0:keys=" + number(size.keys) + ",expires=" + number(size.expires) + ",avg_ttl=0\r\n";
    }
    text += "\r\n";
  }
  if (!text.empty()) text.resize(text.size() - 2);  // no blank line after the last section
  reply_bulk(ctx.out, text);
}

// CLIENT SETNAME name | GETNAME | ID | SETINFO ... (accepted, ignored)
void client(CommandContext& ctx, Args args) {
  const std::string_view sub = args[1];
  if (equals_nocase(sub, "setname")) {
    if (args.size() != 3) return reply_arity(ctx.out, "client|setname");
    for (const char c : args[2]) {
      if (c < '!' || c > '~') {
        return reply_error(ctx.out,
                           "ERR Client names cannot contain spaces, newlines or special "
                           "characters.");
      }
    }
    ctx.client.name = args[2];
    return reply_ok(ctx.out);
  }
  if (equals_nocase(sub, "getname")) {
    if (args.size() != 2) return reply_arity(ctx.out, "client|getname");
    if (ctx.client.name.empty()) return reply_nil(ctx.out);
    return reply_bulk(ctx.out, ctx.client.name);
  }
  if (equals_nocase(sub, "id")) return reply_int(ctx.out, static_cast<std::int64_t>(ctx.client.id));
  if (equals_nocase(sub, "setinfo")) return reply_ok(ctx.out);
  reply_unknown_subcommand(ctx.out, sub, "CLIENT");
}

}  // namespace reactor::protocols::resp::handlers
