// Shared test helpers: an echo protocol, a server running its loop on a background thread,
// blocking clients with bounded waits, and deterministic payloads.
#pragma once

#include <doctest/doctest.h>
#include <sys/socket.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "reactor/loop.hpp"
#include "reactor/models/epoll.hpp"
#include "reactor/session.hpp"
#include "reactor/socket.hpp"

namespace test {

using namespace std::chrono_literals;

// Sends back every byte it gets. `on_close`, if given, hears why the connection ended.
class EchoSession final : public reactor::Session {
 public:
  explicit EchoSession(std::function<void(std::error_code)> on_close = {})
      : on_close_(std::move(on_close)) {}
  std::size_t on_data(reactor::Peer& peer, std::span<const std::byte> bytes) override {
    peer.send(bytes);
    return bytes.size();
  }
  void on_close(std::error_code ec) override {
    if (on_close_) on_close_(ec);
  }

 private:
  std::function<void(std::error_code)> on_close_;
};

class EchoProtocol final : public reactor::Protocol {
 public:
  std::unique_ptr<reactor::Session> open(reactor::Hub&) override {
    return std::make_unique<EchoSession>();
  }
};

// Any session, made by a lambda.
class LambdaProtocol final : public reactor::Protocol {
 public:
  explicit LambdaProtocol(std::function<std::unique_ptr<reactor::Session>()> make)
      : make_(std::move(make)) {}
  std::unique_ptr<reactor::Session> open(reactor::Hub&) override { return make_(); }

 private:
  std::function<std::unique_ptr<reactor::Session>()> make_;
};

inline std::unique_ptr<reactor::Loop> make_loop() {
  auto loop = reactor::Loop::create();
  REQUIRE(loop.ok());
  return std::move(*loop);
}

inline reactor::Address parse(std::string_view url) {
  auto a = reactor::Address::parse(url);
  REQUIRE_MESSAGE(a.ok(), reactor::describe(url, a.error()));
  return *a;
}

// An EpollServer whose loop runs on its own thread. Everything that touches the server goes
// through call(), which runs on the loop thread and waits (bounded) for the answer.
class ServerThread {
 public:
  ServerThread(reactor::Protocol& protocol, reactor::ServerOptions options = {})
      : loop_(make_loop()),
        server_(std::make_unique<reactor::EpollServer>(*loop_, protocol, options)) {}
  ~ServerThread() { stop(); }

  reactor::Address listen(std::string_view url) {
    auto bound = server_->listen(parse(url));
    REQUIRE_MESSAGE(bound.ok(), reactor::describe(url, bound.error()));
    return *bound;
  }
  void start() {
    thread_ = std::thread([this] { loop_->run(); });
  }
  template <class F>
  auto call(F f) -> decltype(f()) {
    using R = decltype(f());
    auto promise = std::make_shared<std::promise<R>>();
    auto future = promise->get_future();
    loop_->post([promise, f = std::move(f)]() mutable {
      if constexpr (std::is_void_v<R>) {
        f();
        promise->set_value();
      } else {
        promise->set_value(f());
      }
    });
    REQUIRE(future.wait_for(10s) == std::future_status::ready);
    return future.get();
  }
  reactor::ServerStats stats() {
    return call([this] { return server_->stats(); });
  }
  // Waits (bounded) until `pred(stats)` holds; returns the last stats seen.
  reactor::ServerStats wait_for_stats(std::function<bool(const reactor::ServerStats&)> pred,
                                      std::chrono::seconds limit = 10s) {
    auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      auto s = stats();
      if (pred(s) || std::chrono::steady_clock::now() > deadline) return s;
      std::this_thread::sleep_for(2ms);  // polling a condition, bounded by `limit`
    }
  }
  void stop() {
    if (!thread_.joinable()) return;
    loop_->stop();
    thread_.join();
    server_.reset();
  }
  reactor::Loop& loop() { return *loop_; }
  reactor::EpollServer& server() { return *server_; }

 private:
  std::unique_ptr<reactor::Loop> loop_;
  std::unique_ptr<reactor::EpollServer> server_;
  std::thread thread_;
};

// A blocking client socket with a 10 s receive/send timeout, so no test can hang forever.
inline reactor::Fd connect_to(const reactor::Address& address) {
  auto fd = reactor::connect_blocking(address, 10s);
  REQUIRE_MESSAGE(fd.ok(), reactor::describe(address.to_string(), fd.error()));
  REQUIRE_FALSE(reactor::set_receive_timeout(fd->get(), 10s));
  REQUIRE_FALSE(reactor::set_send_timeout(fd->get(), 10s));
  return std::move(*fd);
}

inline std::vector<std::byte> random_bytes(std::size_t n, unsigned seed) {
  std::mt19937 rng(seed);
  std::vector<std::byte> out(n);
  for (auto& b : out) b = static_cast<std::byte>(rng() & 0xff);
  return out;
}

// Reads exactly n bytes (fails the test on timeout or early EOF).
inline std::vector<std::byte> read_exact(int fd, std::size_t n) {
  std::vector<std::byte> out(n);
  auto got = reactor::recv_exact(fd, out.data(), n);
  REQUIRE_MESSAGE(got.ok(), got.error().message());
  REQUIRE(*got == n);
  return out;
}

// Reads until EOF (bounded by the socket's receive timeout).
inline std::string read_to_eof(int fd) {
  std::string out;
  char chunk[4096];
  for (;;) {
    auto n = reactor::recv_some(fd, chunk, sizeof(chunk));
    REQUIRE_MESSAGE(n.ok(), n.error().message());
    if (*n == 0) return out;
    out.append(chunk, *n);
  }
}

inline void send_all(int fd, std::span<const std::byte> bytes) {
  auto ec = reactor::send_all(fd, bytes.data(), bytes.size());
  REQUIRE_MESSAGE(!ec, ec.message());
}
inline void send_all(int fd, std::string_view text) {
  send_all(fd, reactor::as_bytes(text));
}

inline std::string temp_socket_path(std::string_view name) {
  return "/tmp/reactor-test-" + std::to_string(::getpid()) + "-" + std::string(name);
}

}  // namespace test
