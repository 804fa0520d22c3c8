#include "reactor/models/epoll.hpp"

#include <sys/select.h>

#include "reactor/error.hpp"
#include "reactor/log.hpp"
#include "reactor/models/stop_signals.hpp"
#include "reactor/socket.hpp"

namespace reactor {

// One listening socket: an Acceptor feeding the server.
class EpollServer::Listener final : public AcceptHandler {
 public:
  Listener(EpollServer& server, Fd fd, Transport transport)
      : server_(server),
        transport_(transport),
        acceptor_(server.loop_, std::move(fd), transport, *this) {}
  Acceptor& acceptor() { return acceptor_; }
  void on_accept(Fd fd) override { server_.accept(std::move(fd), transport_); }

 private:
  EpollServer& server_;
  Transport transport_;
  Acceptor acceptor_;
};

// The server's hub as its connections see it: forwards everything, and a forgotten peer (a
// connection gone, see ConnectionOptions::hub) gives its place under the shared limit back.
class EpollServer::ReleasingHub final : public Hub {
 public:
  ReleasingHub(Hub& hub, ConnectionLimit& limit) : hub_(hub), limit_(limit) {}
  void forget(Peer& peer) override {
    hub_.forget(peer);
    limit_.release();
  }
  void join(std::string_view room, Peer& peer) override { hub_.join(room, peer); }
  void leave(std::string_view room, Peer& peer) override { hub_.leave(room, peer); }
  void publish(std::string_view room, std::span<const std::byte> bytes,
               const Peer* except) override {
    hub_.publish(room, bytes, except);
  }
  bool claim_name(std::string_view name, Peer& peer) override {
    return hub_.claim_name(name, peer);
  }
  void release_name(Peer& peer) override { hub_.release_name(peer); }
  bool send_to(std::string_view name, std::span<const std::byte> bytes) override {
    return hub_.send_to(name, bytes);
  }
  std::vector<RoomInfo> rooms() override { return hub_.rooms(); }
  std::vector<std::string> members(std::string_view room) override { return hub_.members(room); }
  void set_farewell(std::string_view room, std::span<const std::byte> bytes, Peer& peer) override {
    hub_.set_farewell(room, bytes, peer);
  }

 private:
  Hub& hub_;
  ConnectionLimit& limit_;
};

EpollServer::EpollServer(Loop& loop, Protocol& protocol, const ServerOptions& options, Hub* hub)
    : loop_(loop),
      protocol_(protocol),
      options_(options),
      hub_(hub != nullptr ? hub : &own_hub_),
      releasing_hub_(options.shared_limit != nullptr
                         ? std::make_unique<ReleasingHub>(*hub_, *options.shared_limit)
                         : nullptr),
      connections_(loop) {
  connection_options_.high_water = options.high_water;
  connection_options_.low_water = options.low_water;
  connection_options_.idle_timeout = options.idle_timeout;
  connection_options_.max_outbox = protocol.max_outbox();
  connection_options_.max_input = protocol.max_input();
  connection_options_.hub = releasing_hub_ ? releasing_hub_.get() : hub_;
  connection_options_.protocol = &protocol;
  ignore_sigpipe();
}

EpollServer::~EpollServer() {
  if (grace_timer_ != kNoTimer) loop_.cancel_timer(grace_timer_);
  listeners_.clear();
  datagrams_.clear();
  connections_.abort_all(Errc::shutting_down);
  loop_.destroy_retired();  // sessions hear on_close while the hub still exists
}

Result<Address> EpollServer::listen(const Address& address) {
  ListenOptions listen_options;
  listen_options.reuse_port = options_.reuse_port;
  auto fd = listen_on(address, listen_options);
  if (!fd) return fd.error();
  auto bound = local_address(fd->get(), address.transport());
  if (!bound) return bound.error();

  if (address.transport() == Transport::udp) {
    std::unique_ptr<Session> session;
    try {
      session = protocol_.open(*hub_);
    } catch (...) {
      return Errc::session_failed;
    }
    if (!session) return Errc::session_failed;
    auto endpoint = std::make_unique<DatagramEndpoint>(loop_, std::move(*fd), std::move(session));
    if (auto ec = endpoint->start()) return ec;
    datagrams_.push_back(std::move(endpoint));
    return bound;
  }

  auto listener = std::make_unique<Listener>(*this, std::move(*fd), address.transport());
  if (auto ec = listener->acceptor().start()) return ec;
  listeners_.push_back(std::move(listener));
  return bound;
}

std::error_code EpollServer::adopt_listener(Fd fd, Transport transport) {
  auto listener = std::make_unique<Listener>(*this, std::move(fd), transport);
  listener->acceptor().leave_path();  // its UNIX socket file is its owner's to remove
  if (auto ec = listener->acceptor().start()) return ec;
  listeners_.push_back(std::move(listener));
  return {};
}

// Takes a place for one more connection: under the shared limit, or this server's own.
bool EpollServer::admit() {
  if (options_.shared_limit != nullptr) return options_.shared_limit->try_acquire();
  return options_.max_connections == 0 || connections_.size() < options_.max_connections;
}

void EpollServer::accept(Fd fd, Transport transport) {
  if (shutting_down_) {
    ++rejected_;
    return;  // fd closes here: the client sees the connection closed at once
  }
  if (!admit()) {
    ++rejected_;
    refuse_connection(fd.get(), transport, protocol_);
    return;
  }
  // From here on, a connection that is not opened gives its place back.
  auto give_back = [this] {
    if (options_.shared_limit != nullptr) options_.shared_limit->release();
  };
  if (loop_.backend() == Backend::select && fd.get() >= FD_SETSIZE) {
    give_back();
    // select cannot watch it: close it unserved (counted as shed), say why.
    ++fd_limit_shed_;
    auto peer = peer_address(fd.get(), transport);
    log(LogLevel::warn, "%s: %s; connection closed",
        peer ? peer->to_string().c_str() : "connection",
        make_error_code(Errc::fd_too_large).message().c_str());
    return;
  }
  std::unique_ptr<Session> session;
  try {
    session = protocol_.open(*hub_);
  } catch (...) {
  }
  if (!session) {
    give_back();
    ++rejected_;
    return;
  }
  connections_.open(std::move(fd), transport, std::move(session), connection_options_);
}

void EpollServer::shutdown(std::chrono::milliseconds grace, Task done) {
  shutting_down_ = true;
  on_drained_ = std::move(done);
  for (auto& listener : listeners_) listener->acceptor().stop();
  for (auto& endpoint : datagrams_) endpoint->stop();
  connections_.close_all();
  if (grace_timer_ == kNoTimer) {
    grace_timer_ = loop_.after(grace, [this] {
      grace_timer_ = kNoTimer;
      connections_.abort_all(Errc::shutting_down);
      check_drained();
    });
  }
  // Connections leave the set as they finish flushing; poll the count cheaply.
  check_drained();
}

void EpollServer::check_drained() {
  if (!on_drained_) return;
  if (connections_.size() > 0) {
    loop_.after(std::chrono::milliseconds(5), [this] { check_drained(); });
    return;
  }
  if (grace_timer_ != kNoTimer) loop_.cancel_timer(grace_timer_);
  grace_timer_ = kNoTimer;
  Task done = std::move(on_drained_);
  // After the batch, so that the last sessions' on_close has run.
  loop_.post(std::move(done));
}

ServerStats EpollServer::stats() const {
  ServerStats s;
  const auto& c = connections_.counters();
  s.accepted = c.opened;
  s.closed = c.closed;
  s.failed = c.failed;
  s.bytes_in = c.bytes_in;
  s.bytes_out = c.bytes_out;
  s.writes = c.writes;
  s.read_pauses = c.read_pauses;
  s.messages_too_large = c.messages_too_large;
  s.live = connections_.size();
  s.rejected = rejected_;
  s.shed = fd_limit_shed_;
  for (const auto& listener : listeners_) s.shed += listener->acceptor().stats().shed;
  for (const auto& d : datagrams_) {
    s.datagrams_in += d->stats().received;
    s.datagrams_out += d->stats().sent;
    s.datagrams_too_large += d->stats().too_large;
    s.bytes_in += d->stats().bytes_in;
    s.bytes_out += d->stats().bytes_out;
  }
  return s;
}

}  // namespace reactor

namespace reactor {
namespace {

class EpollModel final : public Model {
 public:
  EpollModel(std::unique_ptr<Loop> owned, Loop& loop, Protocol& protocol,
             const ModelOptions& options, Hub* hub)
      : owned_loop_(std::move(owned)),
        loop_(&loop),
        options_(options),
        server_(*loop_, protocol, server_options(options), hub) {}

  Result<Address> listen(const Address& address) override { return server_.listen(address); }

  std::error_code run() override {
    if (auto ec = block_signals({REACTOR_STOP_SIGNALS})) return ec;
    auto on_signal = [](int signo, void* self) {
      static_cast<EpollModel*>(self)->on_stop_signal(signo);
    };
    if (auto ec = loop_->handle_signals({REACTOR_STOP_SIGNALS}, on_signal, this)) return ec;
    auto failure = loop_->run();
    final_stats_ = server_.stats();
    return failure;
  }

  void request_stop() override {
    loop_->post([this] { begin_shutdown(); });
  }

  ServerStats stats() const override { return final_stats_; }

 private:
  static ServerOptions server_options(const ModelOptions& m) {
    ServerOptions s;
    s.idle_timeout = m.idle_timeout;
    s.max_connections = m.max_connections;
    return s;
  }
  // The first signal starts the graceful stop; a second stops the loop at once (the server's
  // destructor then closes what is left).
  void on_stop_signal(int signo) {
    if (stopping_) {
      if (options_.announce_stop) announce_forced_stop(signo);
      loop_->stop();
      return;
    }
    if (options_.announce_stop) {
      announce_graceful_stop(signo, options_.shutdown_grace,
                             static_cast<long long>(server_.stats().live));
    }
    begin_shutdown();
  }
  void begin_shutdown() {
    if (stopping_) return;
    stopping_ = true;
    server_.shutdown(options_.shutdown_grace, [this] { loop_->stop(); });
  }

  std::unique_ptr<Loop> owned_loop_;  // null when the caller owns the loop
  Loop* loop_;
  ModelOptions options_;
  EpollServer server_;
  ServerStats final_stats_;
  bool stopping_ = false;
};

}  // namespace

std::unique_ptr<Model> make_epoll_model(Protocol& protocol, const ModelOptions& options) {
  return make_loop_model(Backend::epoll, protocol, options);
}

std::unique_ptr<Model> make_poll_model(Protocol& protocol, const ModelOptions& options) {
  return make_loop_model(Backend::poll, protocol, options);
}

std::unique_ptr<Model> make_select_model(Protocol& protocol, const ModelOptions& options) {
  return make_loop_model(Backend::select, protocol, options);
}

std::unique_ptr<Model> make_loop_model(Backend backend, Protocol& protocol,
                                       const ModelOptions& options) {
  auto loop = Loop::create(backend);
  if (!loop) return nullptr;
  Loop& borrowed = **loop;
  return std::make_unique<EpollModel>(std::move(*loop), borrowed, protocol, options, nullptr);
}

std::unique_ptr<Model> make_epoll_model(Loop& loop, Protocol& protocol, const ModelOptions& options,
                                        Hub* hub) {
  return std::make_unique<EpollModel>(nullptr, loop, protocol, options, hub);
}

}  // namespace reactor
