// The threadpool model (muduo's EventLoopThreadPool): run()'s thread accepts on every listener
// with one epoll loop and hands each connection, round-robin, to one of N worker threads
// (--workers, default one per core), each running its own Loop and EpollServer. A connection
// stays on its thread for life. Chat works through a ShardHub across the workers' loops.
//
// Why loops and not blocking threads: a pool of N blocking threads serves only N connections at
// once (the N+1st waits for a free thread: an idle chat client would starve everyone behind it);
// N loops serve any number with N threads, and reuse EpollServer unchanged. The difference from
// reuseport: one listener and one accepting thread (works for UNIX sockets too, spreads
// connections evenly instead of by the kernel's hash).
#pragma once

#include <memory>

#include "reactor/models/model.hpp"

namespace reactor {

// TCP and UNIX stream listeners (UDP and SEQPACKET: Errc::wrong_transport).
std::unique_ptr<Model> make_threadpool_model(Protocol& protocol, const ModelOptions& options);

}  // namespace reactor
