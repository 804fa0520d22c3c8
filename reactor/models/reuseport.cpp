#include "reactor/models/reuseport.hpp"

#include <atomic>
#include <csignal>
#include <thread>
#include <vector>

#include "reactor/error.hpp"
#include "reactor/models/epoll.hpp"
#include "reactor/models/shard_hub.hpp"
#include "reactor/models/stop_signals.hpp"

namespace reactor {
namespace {

class ReuseportModel final : public Model {
 public:
  // `hubs` empty: the loops share a ShardHub; else loop i's sessions use hubs[i].
  ReuseportModel(std::vector<std::unique_ptr<Loop>> owned, std::vector<Loop*> loops,
                 Protocol& protocol, const ModelOptions& options, std::vector<Hub*> hubs)
      : options_(options), owned_loops_(std::move(owned)), loops_(std::move(loops)) {
    if (hubs.empty()) {
      shard_hub_ = std::make_unique<ShardHub>(loops_);
      for (std::size_t i = 0; i < loops_.size(); ++i) hubs.push_back(&shard_hub_->shard(i));
    }
    ServerOptions server_options;
    server_options.idle_timeout = options.idle_timeout;
    // One limit for the whole server, shared by every loop (not a share each).
    if (options.max_connections != 0) {
      limit_ = std::make_unique<AtomicConnectionLimit>(options.max_connections);
      server_options.shared_limit = limit_.get();
    }
    server_options.reuse_port = true;
    for (std::size_t i = 0; i < loops_.size(); ++i) {
      servers_.push_back(
          std::make_unique<EpollServer>(*loops_[i], protocol, server_options, hubs[i]));
    }
  }

  ~ReuseportModel() override {
    servers_.clear();  // sessions close (and leave the hub) while the hub and loops exist
  }

  Result<Address> listen(const Address& address) override {
    auto bound = servers_[0]->listen(address);
    if (!bound) return bound;
    // UNIX sockets cannot share a path: the first loop serves those alone.
    if (address.is_unix()) return bound;
    for (std::size_t i = 1; i < servers_.size(); ++i) {
      // The same concrete port, SO_REUSEPORT; with_port keeps a "*" address dual-stack.
      auto more = servers_[i]->listen(address.with_port(bound->port()));
      if (!more) return more.error();
    }
    return bound;
  }

  std::error_code run() override {
    // Block the signals before starting threads, so only loop 0's signalfd sees them.
    if (auto ec = block_signals({REACTOR_STOP_SIGNALS})) return ec;
    auto on_signal = [](int signo, void* self) {
      static_cast<ReuseportModel*>(self)->on_stop_signal(signo);
    };
    if (auto ec = loops_[0]->handle_signals({REACTOR_STOP_SIGNALS}, on_signal, this)) return ec;
    std::vector<std::thread> threads;
    for (std::size_t i = 1; i < loops_.size(); ++i) {
      threads.emplace_back([loop = loops_[i]] { loop->run(); });
    }
    loops_[0]->run();
    for (auto& t : threads) t.join();
    for (const auto& server : servers_) final_stats_ += server->stats();
    return {};
  }

  // Loop 0 takes the stop signals, so it stops last, once every loop has drained: a second
  // signal must still find it running.
  void request_stop() override {
    for (std::size_t i = 0; i < loops_.size(); ++i) {
      loops_[i]->post([this, i] {
        servers_[i]->shutdown(options_.shutdown_grace, [this, i] { on_drained(i); });
      });
    }
  }

  void on_drained(std::size_t i) {  // on loop i
    if (drained_[i]) return;
    drained_[i] = 1;
    if (i != 0) loops_[i]->stop();
    if (drained_count_.fetch_add(1, std::memory_order_acq_rel) + 1 == loops_.size()) {
      Loop* first = loops_[0];
      first->post([first] { first->stop(); });
    }
  }

  ServerStats stats() const override { return final_stats_; }

 private:
  // On loop 0. The first signal starts the graceful stop; a second stops every loop at once
  // (each server's destructor then closes what is left).
  void on_stop_signal(int signo) {
    if (signalled_) {
      if (options_.announce_stop) announce_forced_stop(signo);
      for (Loop* l : loops_) l->post([l] { l->stop(); });
      return;
    }
    signalled_ = true;
    if (options_.announce_stop) announce_graceful_stop(signo, options_.shutdown_grace, -1);
    request_stop();
  }

  ModelOptions options_;
  std::vector<std::unique_ptr<Loop>> owned_loops_;  // empty when the caller owns them
  std::vector<Loop*> loops_;
  std::unique_ptr<ShardHub> shard_hub_;           // unless the caller gave hubs
  std::unique_ptr<AtomicConnectionLimit> limit_;  // with --max-connections; outlives servers_
  std::vector<std::unique_ptr<EpollServer>> servers_;
  ServerStats final_stats_;
  bool signalled_ = false;                                           // loop 0 only
  std::vector<char> drained_ = std::vector<char>(loops_.size(), 0);  // [i] on loop i only
  std::atomic<std::size_t> drained_count_{0};
};

}  // namespace

std::unique_ptr<Model> make_reuseport_model(Protocol& protocol, const ModelOptions& options) {
  unsigned workers = options.workers;
  if (workers == 0) workers = std::max(1u, std::thread::hardware_concurrency());
  std::vector<std::unique_ptr<Loop>> owned;
  std::vector<Loop*> loops;
  for (unsigned i = 0; i < workers; ++i) {
    auto loop = Loop::create();
    if (!loop) return nullptr;
    loops.push_back(loop->get());
    owned.push_back(std::move(*loop));
  }
  return std::make_unique<ReuseportModel>(std::move(owned), std::move(loops), protocol, options,
                                          std::vector<Hub*>{});
}

std::unique_ptr<Model> make_reuseport_model(std::vector<Loop*> loops, Protocol& protocol,
                                            const ModelOptions& options, std::vector<Hub*> hubs) {
  if (loops.empty() || hubs.size() != loops.size()) return nullptr;
  return std::make_unique<ReuseportModel>(std::vector<std::unique_ptr<Loop>>{}, std::move(loops),
                                          protocol, options, std::move(hubs));
}

}  // namespace reactor
