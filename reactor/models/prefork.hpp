// The prefork model (Apache prefork, nginx's worker processes): N worker processes
// (--workers, default one per core), forked once before serving, each accepting on the same
// inherited listening sockets with its own epoll Loop and EpollServer.
//
// Why each worker runs the epoll loop rather than a blocking accept-and-serve: a blocking
// worker serves one connection at a time, so N idle clients would stop the server; a loop per
// process serves any number and reuses EpollServer unchanged (what nginx does).
//
// The parent (run()'s thread, which must be the process's only thread) serves nothing: it polls
// a signalfd (SIGINT, SIGTERM, SIGCHLD) and a wake-up eventfd, restarts a worker that dies,
// forwards SIGTERM on stop (SIGKILL after shutdown_grace + 1 s) and sums the workers' stats,
// which each worker writes to a pipe before it exits. Workers get SIGTERM if the parent dies.
// --max-connections bounds all workers together: they count their connections in a shared page
// (one slot each), which the parent corrects when it reaps a worker that died.
// Protocols that use the hub (chat) or share memory between sessions are refused (see the
// model registry): processes share no rooms.
#pragma once

#include <memory>

#include "reactor/models/model.hpp"

namespace reactor {

// TCP and UNIX stream listeners (UDP and SEQPACKET: Errc::wrong_transport).
std::unique_ptr<Model> make_prefork_model(Protocol& protocol, const ModelOptions& options);

}  // namespace reactor
