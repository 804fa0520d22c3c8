// The reuseport model: N epoll loops (default one per core), each with its own SO_REUSEPORT
// listener and its own connections, sharing nothing on the hot path. The kernel spreads new
// connections over the listeners. Hub traffic (chat) crosses loops through Loop::post().
#pragma once

#include <memory>
#include <vector>

#include "reactor/loop.hpp"
#include "reactor/models/model.hpp"

namespace reactor {

std::unique_ptr<Model> make_reuseport_model(Protocol& protocol, const ModelOptions& options);
// The same on loops the caller owns (they outlive the model), loop i's sessions using hubs[i]
// (one hub per loop, each used on its loop's thread only: reactor-redis's RedisHub).
std::unique_ptr<Model> make_reuseport_model(std::vector<Loop*> loops, Protocol& protocol,
                                            const ModelOptions& options, std::vector<Hub*> hubs);

}  // namespace reactor
