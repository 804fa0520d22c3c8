#include "reactor/models/threadpool.hpp"

#include <algorithm>
#include <csignal>
#include <thread>
#include <vector>

#include "reactor/acceptor.hpp"
#include "reactor/error.hpp"
#include "reactor/models/epoll.hpp"
#include "reactor/models/shard_hub.hpp"
#include "reactor/models/stop_signals.hpp"
#include "reactor/socket.hpp"

namespace reactor {
namespace {

std::vector<Loop*> raw(const std::vector<std::unique_ptr<Loop>>& loops) {
  std::vector<Loop*> out;
  for (const auto& l : loops) out.push_back(l.get());
  return out;
}

class ThreadpoolModel final : public Model {
 public:
  ThreadpoolModel(std::unique_ptr<Loop> acceptor_loop, std::vector<std::unique_ptr<Loop>> loops,
                  Protocol& protocol, const ModelOptions& options)
      : options_(options),
        acceptor_loop_(std::move(acceptor_loop)),
        loops_(std::move(loops)),
        hub_(raw(loops_)) {
    ServerOptions server_options;
    server_options.idle_timeout = options.idle_timeout;
    // One limit for the whole server, shared by every worker (not a share each).
    if (options.max_connections != 0) {
      limit_ = std::make_unique<AtomicConnectionLimit>(options.max_connections);
      server_options.shared_limit = limit_.get();
    }
    for (std::size_t i = 0; i < loops_.size(); ++i) {
      servers_.push_back(
          std::make_unique<EpollServer>(*loops_[i], protocol, server_options, &hub_.shard(i)));
    }
  }

  ~ThreadpoolModel() override {
    listeners_.clear();
    servers_.clear();  // sessions close (and leave the hub) while the hub and loops exist
  }

  Result<Address> listen(const Address& address) override {
    if (!is_connection_oriented(address.transport()) || is_message_oriented(address.transport())) {
      return make_error_code(Errc::wrong_transport);
    }
    auto fd = listen_on(address, {});
    if (!fd) return fd.error();
    auto bound = local_address(fd->get(), address.transport());
    if (!bound) return bound.error();
    auto listener = std::make_unique<Listener>(*this, std::move(*fd), address.transport());
    if (auto ec = listener->acceptor.start()) return ec;
    listeners_.push_back(std::move(listener));
    return bound;
  }

  std::error_code run() override {
    // Blocked before the workers start, so only the acceptor's signalfd sees them.
    if (auto ec = block_signals({REACTOR_STOP_SIGNALS})) return ec;
    auto on_signal = [](int signo, void* self) {
      static_cast<ThreadpoolModel*>(self)->on_stop_signal(signo);
    };
    if (auto ec = acceptor_loop_->handle_signals({REACTOR_STOP_SIGNALS}, on_signal, this)) {
      return ec;
    }
    std::vector<std::thread> threads;
    for (auto& loop : loops_) threads.emplace_back([l = loop.get()] { l->run(); });
    auto failure = acceptor_loop_->run();
    if (failure) begin_shutdown();  // the workers still stop in order
    for (auto& t : threads) t.join();
    for (const auto& listener : listeners_) final_stats_.shed += listener->acceptor.stats().shed;
    for (const auto& server : servers_) final_stats_ += server->stats();
    return failure;
  }

  void request_stop() override {
    acceptor_loop_->post([this] { begin_shutdown(); });
  }

  ServerStats stats() const override { return final_stats_; }

 private:
  struct Listener final : AcceptHandler {
    Listener(ThreadpoolModel& model, Fd fd, Transport t)
        : model(model), transport(t), acceptor(*model.acceptor_loop_, std::move(fd), t, *this) {}
    void on_accept(Fd fd) override { model.hand_over(std::move(fd), transport); }
    ThreadpoolModel& model;
    Transport transport;
    Acceptor acceptor;
  };

  void hand_over(Fd fd, Transport transport) {
    const std::size_t i = next_++ % loops_.size();
    EpollServer* server = servers_[i].get();
    // The descriptor travels as an int (a Task holds no move-only Fd cheaply): the worker owns it
    // from here; a task that never runs leaks nothing, as the loop runs every posted task before
    // it stops.
    loops_[i]->post(
        [server, raw_fd = fd.release(), transport] { server->adopt(Fd(raw_fd), transport); });
  }

  // On the acceptor thread. The first signal starts the graceful stop; a second stops every
  // loop at once (each server's destructor then closes what is left).
  void on_stop_signal(int signo) {
    if (stopping_) {
      if (options_.announce_stop) announce_forced_stop(signo);
      for (auto& loop : loops_) {
        Loop* l = loop.get();
        l->post([l] { l->stop(); });
      }
      acceptor_loop_->stop();
      return;
    }
    if (options_.announce_stop) announce_graceful_stop(signo, options_.shutdown_grace, -1);
    begin_shutdown();
  }

  void begin_shutdown() {
    if (stopping_) return;
    stopping_ = true;
    for (auto& listener : listeners_) listener->acceptor.stop();
    remaining_ = loops_.size();
    for (std::size_t i = 0; i < loops_.size(); ++i) {
      Loop* loop = loops_[i].get();
      EpollServer* server = servers_[i].get();
      loop->post([this, loop, server, grace = options_.shutdown_grace] {
        server->shutdown(grace, [this, loop] {
          loop->stop();
          acceptor_loop_->post([this] {
            if (--remaining_ == 0) acceptor_loop_->stop();
          });
        });
      });
    }
  }

  ModelOptions options_;
  std::unique_ptr<Loop> acceptor_loop_;
  std::vector<std::unique_ptr<Loop>> loops_;
  ShardHub hub_;
  std::unique_ptr<AtomicConnectionLimit> limit_;  // with --max-connections; outlives servers_
  std::vector<std::unique_ptr<EpollServer>> servers_;
  std::vector<std::unique_ptr<Listener>> listeners_;
  std::size_t next_ = 0;       // acceptor thread only
  std::size_t remaining_ = 0;  // acceptor thread only: workers not yet drained
  bool stopping_ = false;      // acceptor thread only
  ServerStats final_stats_;
};

}  // namespace

std::unique_ptr<Model> make_threadpool_model(Protocol& protocol, const ModelOptions& options) {
  unsigned workers = options.workers;
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  auto acceptor = Loop::create();
  if (!acceptor) return nullptr;
  std::vector<std::unique_ptr<Loop>> loops;
  for (unsigned i = 0; i < workers; ++i) {
    auto loop = Loop::create();
    if (!loop) return nullptr;
    loops.push_back(std::move(*loop));
  }
  return std::make_unique<ThreadpoolModel>(std::move(*acceptor), std::move(loops), protocol,
                                           options);
}

}  // namespace reactor
