// The command handlers, grouped by file: key/string commands (string_commands.cpp), server and
// connection commands (server_commands.cpp), pub/sub (pubsub.cpp). Arity is checked before.
#pragma once

#include "protocols/resp/commands.hpp"

namespace reactor::protocols::resp::handlers {

void get(CommandContext&, Args);
void set(CommandContext&, Args);
void getset(CommandContext&, Args);
void del(CommandContext&, Args);
void exists(CommandContext&, Args);
void incr(CommandContext&, Args);
void decr(CommandContext&, Args);
void incrby(CommandContext&, Args);
void decrby(CommandContext&, Args);
void append(CommandContext&, Args);
void strlen(CommandContext&, Args);
void mget(CommandContext&, Args);
void mset(CommandContext&, Args);
void expire(CommandContext&, Args);
void pexpire(CommandContext&, Args);
void ttl(CommandContext&, Args);
void pttl(CommandContext&, Args);
void persist(CommandContext&, Args);
void type(CommandContext&, Args);
void keys(CommandContext&, Args);
void dbsize(CommandContext&, Args);
void flushall(CommandContext&, Args);

void ping(CommandContext&, Args);
void echo(CommandContext&, Args);
void select(CommandContext&, Args);
void quit(CommandContext&, Args);
void command(CommandContext&, Args);
void config(CommandContext&, Args);
void info(CommandContext&, Args);
void client(CommandContext&, Args);

void subscribe(CommandContext&, Args);
void unsubscribe(CommandContext&, Args);
void publish(CommandContext&, Args);

// "wrong number of arguments for 'NAME' command"
void reply_arity(std::string& out, std::string_view name);
void reply_not_integer(std::string& out);

}  // namespace reactor::protocols::resp::handlers
