// FakePeer and FakeConnection: drive a Session without sockets. FakePeer records what the session
// sends and asks; FakeConnection plays the stream transport around it (unconsumed input is kept
// and presented again in front of new bytes, as a Connection does).
#pragma once

#include <doctest/doctest.h>

#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "reactor/session.hpp"

namespace test {

class FakePeer final : public reactor::Peer {
 public:
  explicit FakePeer(std::string remote = "tcp://127.0.0.1:40000") : remote_(std::move(remote)) {}

  using reactor::Peer::send;
  void send(std::span<const std::byte> bytes) override {
    if (gone) {
      ++sends_after_gone;
      return;
    }
    ++sends;
    sent.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  void close() override { ++close_calls; }
  void shutdown_write() override { ++shutdown_calls; }
  std::size_t buffered() const override { return buffered_bytes; }
  std::string remote() const override { return remote_; }
  // The file's bytes are read now and appended to `sent`, as if the transport had sent them.
  std::error_code send_file(int fd, std::uint64_t offset, std::uint64_t length) override {
    ++files_sent;
    std::string chunk(64 * 1024, '\0');
    while (length > 0) {
      const std::size_t want = length < chunk.size() ? static_cast<std::size_t>(length) : chunk.size();
      const ssize_t n = ::pread(fd, chunk.data(), want, static_cast<off_t>(offset));
      if (n < 0) return {errno, std::system_category()};
      if (n == 0) break;
      sent.append(chunk.data(), static_cast<std::size_t>(n));
      offset += static_cast<std::uint64_t>(n);
      length -= static_cast<std::uint64_t>(n);
    }
    return {};
  }
  // Timers are recorded, never run by themselves: the test advances time with fire().
  reactor::TimerId start_timer(std::chrono::milliseconds delay,
                               std::chrono::milliseconds period) override {
    if (gone) return reactor::kNoTimer;
    const reactor::TimerId id = ++last_timer_;
    timers[id] = {delay, period};
    return id;
  }
  bool cancel_timer(reactor::TimerId id) override { return timers.erase(id) > 0; }
  // Runs the session's on_timer for `id` if it is armed (a one-shot timer is spent then).
  bool fire(reactor::Session& session, reactor::TimerId id) {
    auto it = timers.find(id);
    if (it == timers.end()) return false;
    if (it->second.period.count() == 0) timers.erase(it);
    session.on_timer(*this, id);
    return true;
  }

  // Returns everything sent since the last take() and forgets it.
  std::string take() { return std::exchange(sent, {}); }
  // The same, split into lines without their "\n" (a trailing partial line is kept as is).
  std::vector<std::string> take_lines() {
    std::vector<std::string> lines;
    const std::string text = take();
    std::size_t start = 0;
    while (start < text.size()) {
      std::size_t end = text.find('\n', start);
      if (end == std::string::npos) end = text.size();
      lines.push_back(text.substr(start, end - start));
      start = end + 1;
    }
    return lines;
  }

  std::string sent;
  std::size_t sends = 0;
  std::size_t sends_after_gone = 0;  // sends made after the connection was marked gone
  int close_calls = 0;
  int shutdown_calls = 0;
  std::size_t buffered_bytes = 0;  // what buffered() reports
  bool gone = false;               // set when the connection is closed: sends are ignored
  std::size_t files_sent = 0;
  struct ArmedTimer {
    std::chrono::milliseconds delay;
    std::chrono::milliseconds period;
  };
  std::map<reactor::TimerId, ArmedTimer> timers;  // armed and not cancelled

 private:
  std::string remote_;
  reactor::TimerId last_timer_ = 0;
};

// One session on a stream "connection" made of a FakePeer.
class FakeConnection {
 public:
  FakeConnection(reactor::Protocol& protocol, reactor::Hub& hub) : session_(protocol.open(hub)) {
    REQUIRE(session_ != nullptr);
    session_->on_open(peer);
  }

  // Delivers bytes in one on_data call (after whatever the session left unconsumed) and returns
  // how many of them the session consumed.
  std::size_t feed(std::string_view bytes) {
    pending_ += bytes;
    const std::size_t consumed = session_->on_data(peer, reactor::as_bytes(pending_));
    REQUIRE(consumed <= pending_.size());
    pending_.erase(0, consumed);
    return consumed;
  }
  // Delivers bytes one on_data call per byte.
  void feed_bytewise(std::string_view bytes) {
    for (const char c : bytes) feed(std::string_view(&c, 1));
  }
  void eof() { session_->on_eof(peer); }
  // Fires an armed timer of this connection's session; false if it is not armed.
  bool fire(reactor::TimerId id) { return peer.fire(*session_, id); }
  // The transport went away: later sends are ignored, then the session hears on_close.
  void closed(std::error_code reason = {}) {
    peer.gone = true;
    peer.timers.clear();
    session_->on_close(reason);
  }
  std::size_t unconsumed() const noexcept { return pending_.size(); }
  reactor::Session& session() noexcept { return *session_; }

  FakePeer peer;

 private:
  std::unique_ptr<reactor::Session> session_;
  std::string pending_;
};

}  // namespace test
