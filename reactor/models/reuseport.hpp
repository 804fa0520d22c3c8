// The reuseport model: N epoll loops (default one per core), each with its own SO_REUSEPORT
// listener and its own connections, sharing nothing on the hot path. The kernel spreads new
// connections over the listeners. Hub traffic (chat) crosses loops through Loop::post().
#pragma once

#include <memory>

#include "reactor/models/model.hpp"

namespace reactor {

std::unique_ptr<Model> make_reuseport_model(Protocol& protocol, const ModelOptions& options);

}  // namespace reactor
