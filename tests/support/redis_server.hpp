// A real redis-server for tests: started on 127.0.0.1 on a free port with persistence off and
// its files in a temp dir, ready once it answers PING (bounded), killed with the test.
// Includes the chat client (chat_client.hpp) the hub and cluster tests drive.
#pragma once

#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "chat_client.hpp"
#include "process.hpp"
#include "support.hpp"

namespace test {

// A port nobody listens on right now (bound to port 0 and closed: another process could take
// it before we do, so callers retry a start that fails to bind).
inline int free_port() {
  reactor::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t length = sizeof a;
  REQUIRE(::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &length) == 0);
  return ntohs(a.sin_port);
}

// Sends one inline command and returns the first reply line ("+PONG"), or "" on failure.
inline std::string redis_ask(int port, std::string_view command,
                             std::chrono::milliseconds timeout = 2s) {
  reactor::Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (!fd || ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return {};
  (void)reactor::set_receive_timeout(fd.get(), timeout);
  const std::string line = std::string(command) + "\r\n";
  if (reactor::send_all(fd.get(), line.data(), line.size())) return {};
  std::string reply;
  char c;
  while (::recv(fd.get(), &c, 1, 0) == 1 && c != '\n') reply += c;
  if (!reply.empty() && reply.back() == '\r') reply.pop_back();
  return reply;
}

class RedisServer {
 public:
  // `extra`: more redis-server arguments ("--client-output-buffer-limit", "pubsub 1mb 0 0").
  explicit RedisServer(std::vector<std::string> extra = {}) : extra_(std::move(extra)) {
    char dir[] = "/tmp/reactor-redis-XXXXXX";
    REQUIRE(::mkdtemp(dir) != nullptr);
    dir_ = dir;
    for (int attempt = 0; attempt < 5 && !process_; ++attempt) {
      port_ = free_port();
      launch();
    }
    REQUIRE_MESSAGE(process_.has_value(), "redis-server did not start");
  }
  ~RedisServer() {
    process_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }

  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

  void kill() {
    REQUIRE(process_);
    process_->signal(SIGKILL);
    REQUIRE(process_->wait_exit(10s).has_value());
    process_.reset();
  }
  // Starts again on the same port (after kill()).
  void restart() {
    REQUIRE(!process_);
    launch();
    REQUIRE_MESSAGE(process_.has_value(), "redis-server did not restart on port " << port_);
  }

 private:
  void launch() {
    std::vector<std::string> args{"--port", std::to_string(port_), "--bind", "127.0.0.1", "--save",
                                  "",       "--appendonly",        "no",     "--dir",     dir_};
    args.insert(args.end(), extra_.begin(), extra_.end());
    Process p("/usr/bin/redis-server", args);
    REQUIRE_MESSAGE(p.ok(), "cannot spawn redis-server: " << p.error().message());
    const bool ready = p.pump_until(
        [&] { return p.out().find("Ready to accept connections") != std::string::npos; }, 10s);
    if (!ready) return;  // exited (port taken) or too slow: the caller retries or fails
    // Ready means listening; PING proves it (bounded: a few tries within seconds).
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (redis_ask(port_, "PING") != "+PONG") {
      if (std::chrono::steady_clock::now() > deadline) return;
      p.pump_until([] { return false; }, 50ms);
    }
    process_.emplace(std::move(p));
  }

  std::vector<std::string> extra_;
  std::string dir_;
  int port_ = 0;
  std::optional<Process> process_;
};

}  // namespace test
