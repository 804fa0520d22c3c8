// EpollServer: the product's concurrency model. One Loop drives every listener of a server:
// stream and SEQPACKET listeners through an Acceptor and Connections, UDP through a
// DatagramEndpoint, all with the same Protocol.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "reactor/acceptor.hpp"
#include "reactor/connection.hpp"
#include "reactor/datagram.hpp"
#include "reactor/local_hub.hpp"
#include "reactor/loop.hpp"
#include "reactor/models/model.hpp"
#include "reactor/session.hpp"

namespace reactor {

// A connection limit several EpollServers share (reuseport's and threadpool's loops, prefork's
// worker processes), so that --max-connections bounds the whole server, not each loop. Called
// from every server's thread.
class ConnectionLimit {
 public:
  // Counts one more connection and returns true if it fits under the limit; false otherwise.
  virtual bool try_acquire() noexcept = 0;
  // One connection try_acquire() admitted has closed.
  virtual void release() noexcept = 0;

 protected:
  ~ConnectionLimit() = default;
};

// The limit for the threads of one process: one atomic counter.
class AtomicConnectionLimit final : public ConnectionLimit {
 public:
  explicit AtomicConnectionLimit(std::size_t max) noexcept : max_(max) {}
  bool try_acquire() noexcept override {
    std::size_t n = live_.load(std::memory_order_relaxed);
    do {
      if (n >= max_) return false;
    } while (!live_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
    return true;
  }
  void release() noexcept override { live_.fetch_sub(1, std::memory_order_relaxed); }
  std::size_t live() const noexcept { return live_.load(std::memory_order_relaxed); }

 private:
  const std::size_t max_;
  std::atomic<std::size_t> live_{0};
};

struct ServerOptions {
  std::chrono::milliseconds idle_timeout{0};  // 0: none
  std::size_t max_connections = 0;            // 0: unlimited; surplus is accepted and closed
  // If set, it decides instead of max_connections (the server-wide limit of several servers);
  // it must outlive the server.
  ConnectionLimit* shared_limit = nullptr;
  std::size_t high_water = 1u << 20;
  std::size_t low_water = 256u << 10;
  bool reuse_port = false;  // for several loops on one port
};

class EpollServer {
 public:
  // `hub` may be null: the server then uses its own LocalHub.
  EpollServer(Loop& loop, Protocol& protocol, const ServerOptions& options, Hub* hub = nullptr);
  ~EpollServer();
  EpollServer(const EpollServer&) = delete;
  EpollServer& operator=(const EpollServer&) = delete;

  // Binds and starts serving; returns the bound address (port 0 -> the real port).
  Result<Address> listen(const Address& address);
  // Serves an inherited listening socket (prefork: one per worker process). The socket file of
  // a UNIX listener is left to whoever bound it.
  std::error_code adopt_listener(Fd fd, Transport transport);
  // Serves a connection accepted elsewhere (threadpool: the acceptor's thread hands it over).
  void adopt(Fd fd, Transport transport) { accept(std::move(fd), transport); }
  // Stops accepting, lets connections flush and close; after `grace` the rest are aborted.
  // `done` runs on the loop once no connection is left.
  void shutdown(std::chrono::milliseconds grace, Task done);
  ServerStats stats() const;
  std::size_t live_connections() const noexcept { return connections_.size(); }
  Hub& hub() noexcept { return *hub_; }

 private:
  class Listener;
  class ReleasingHub;
  void accept(Fd fd, Transport transport);
  bool admit();
  void check_drained();

  Loop& loop_;
  Protocol& protocol_;
  ServerOptions options_;
  ConnectionOptions connection_options_;
  LocalHub own_hub_;
  Hub* hub_;
  // With a shared limit: the hub the connections tell when they are gone, which gives their
  // place back (a Connection calls ConnectionOptions::hub->forget once, after its on_close).
  std::unique_ptr<ReleasingHub> releasing_hub_;
  ConnectionSet connections_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::vector<std::unique_ptr<DatagramEndpoint>> datagrams_;
  std::uint64_t rejected_ = 0;
  std::uint64_t fd_limit_shed_ = 0;  // select backend: descriptors it cannot watch
  Task on_drained_;
  TimerId grace_timer_ = kNoTimer;
  bool shutting_down_ = false;
};

}  // namespace reactor

namespace reactor {

// The epoll model behind the Model interface: one Loop and one EpollServer on the calling
// thread. run() takes SIGINT/SIGTERM through a signalfd and shuts down gracefully.
std::unique_ptr<Model> make_epoll_model(Protocol& protocol, const ModelOptions& options);
// The same on a loop the caller owns (it must outlive the model), with `hub` for the sessions
// (null: a LocalHub): for hubs that live on the loop themselves, like reactor-redis's RedisHub.
std::unique_ptr<Model> make_epoll_model(Loop& loop, Protocol& protocol, const ModelOptions& options,
                                        Hub* hub);
// The same single-threaded server on a poll(2) or select(2) Loop (the classic reactors).
std::unique_ptr<Model> make_poll_model(Protocol& protocol, const ModelOptions& options);
std::unique_ptr<Model> make_select_model(Protocol& protocol, const ModelOptions& options);
std::unique_ptr<Model> make_loop_model(Backend backend, Protocol& protocol,
                                       const ModelOptions& options);

}  // namespace reactor
