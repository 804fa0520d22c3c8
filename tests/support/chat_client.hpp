// A client of reactor-server's chat protocol over a blocking socket: reads whole lines with a
// bounded wait (poll with a deadline), buffering what arrives after one. read_line needs no
// doctest, so worker threads may use it.
#pragma once

#include <doctest/doctest.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "reactor/address.hpp"
#include "reactor/fd.hpp"
#include "reactor/socket.hpp"
#include "support.hpp"

namespace test {

class ChatClient {
 public:
  // Connects (the greeting is the first line to read). `receive_buffer` > 0 sets SO_RCVBUF
  // before connecting: a reader that falls behind fast.
  explicit ChatClient(const reactor::Address& address, int receive_buffer = 0) {
    auto fd = reactor::open_socket(address, /*blocking=*/true);
    REQUIRE_MESSAGE(fd.ok(), fd.error().message());
    if (receive_buffer > 0) REQUIRE_FALSE(reactor::set_buffer_sizes(fd->get(), receive_buffer, 0));
    REQUIRE_MESSAGE(::connect(fd->get(), address.sockaddr_ptr(), address.length()) == 0,
                    "connect " << address.to_string() << ": " << std::strerror(errno));
    REQUIRE_FALSE(reactor::set_receive_timeout(fd->get(), 10s));
    REQUIRE_FALSE(reactor::set_send_timeout(fd->get(), 10s));
    fd_ = std::move(*fd);
  }
  virtual ~ChatClient() = default;

  int fd() const { return fd_.get(); }
  // Why the last read_line returned nullopt: "eof", "timeout" or the error.
  const std::string& last_error() const { return error_; }

  void send(std::string_view bytes) { send_all(fd_.get(), bytes); }
  void send_line(std::string_view text) { send(std::string(text) + "\n"); }

  // The next line without its "\n", waiting at most `limit`; nullopt at EOF, on an error or
  // after `limit`, with the reason in last_error().
  std::optional<std::string> read_line(std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      const std::size_t end = buffer_.find('\n', start_);
      if (end != std::string::npos) {
        std::string line = buffer_.substr(start_, end - start_);
        start_ = end + 1;
        if (start_ == buffer_.size()) {
          buffer_.clear();
          start_ = 0;
        }
        return line;
      }
      if (start_ > 0) {
        buffer_.erase(0, start_);
        start_ = 0;
      }
      const auto left =
          std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) {
        error_ = "timeout";
        return std::nullopt;
      }
      pollfd readable{fd_.get(), POLLIN, 0};
      const int ready = ::poll(&readable, 1, static_cast<int>(left.count()));
      if (ready < 0 && errno != EINTR) {
        error_ = std::strerror(errno);
        return std::nullopt;
      }
      if (ready <= 0) continue;
      char chunk[65536];
      const ssize_t n = ::recv(fd_.get(), chunk, sizeof chunk, 0);
      if (n > 0) {
        buffer_.append(chunk, static_cast<std::size_t>(n));
      } else if (n == 0) {
        error_ = "eof";
        return std::nullopt;
      } else if (errno != EINTR && errno != EAGAIN && errno != EWOULDBLOCK) {
        error_ = std::strerror(errno);
        return std::nullopt;
      }
    }
  }

  // The next line; fails the test if none comes.
  std::string line() {
    auto l = read_line();
    REQUIRE_MESSAGE(l.has_value(), "expected a line, got " << error_);
    return *l;
  }

  // Sends a command and returns the next line: its reply when nothing else was due.
  std::string ask(std::string_view command) {
    send_line(command);
    return line();
  }

  // Sends a command and reads up to the first line starting with "OK" or "ERR" (its reply); the
  // lines before it (the greeting, notices, messages) go to `before`.
  std::string ask_past(std::string_view command, std::vector<std::string>& before) {
    send_line(command);
    for (int i = 0; i < 1000; ++i) {
      std::string l = line();
      if (l.starts_with("OK") || l.starts_with("ERR")) return l;
      before.push_back(std::move(l));
    }
    FAIL("no reply to " << command << " in 1000 lines");
    return {};
  }
  std::string ask_past(std::string_view command) {
    std::vector<std::string> before;
    return ask_past(command, before);
  }

  // Reads until a line equal to `want` (true) or `limit` passes / EOF (false); the lines read
  // on the way are appended to `seen`.
  bool wait_for(std::string_view want, std::vector<std::string>& seen,
                std::chrono::milliseconds limit = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      auto line = read_line(left);
      if (!line) return false;
      seen.push_back(*line);
      if (*line == want) return true;
    }
  }
  bool wait_for(std::string_view want, std::chrono::milliseconds limit = 10s) {
    std::vector<std::string> seen;
    return wait_for(want, seen, limit);
  }

 private:
  reactor::Fd fd_;
  std::string buffer_;
  std::size_t start_ = 0;
  std::string error_;
};

}  // namespace test
