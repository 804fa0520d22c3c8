// FakePeer and FakeConnection: drive a Session without sockets. FakePeer records what the session
// sends and asks; FakeConnection plays the stream transport around it (unconsumed input is kept
// and presented again in front of new bytes, as a Connection does).
#pragma once

#include <doctest/doctest.h>

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

 private:
  std::string remote_;
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
  // The transport went away: later sends are ignored, then the session hears on_close.
  void closed(std::error_code reason = {}) {
    peer.gone = true;
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
