// The client behaviours the fault scenarios share: a one-shot echo check, a streaming echo check
// over a deterministic byte pattern, a line reader for chat, and the pattern itself.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "client_loop.hpp"

namespace test {

// A deterministic byte stream per seed, addressable at any offset: what a client sent can be
// re-derived to check what came back without keeping a copy.
char pattern_byte(std::uint64_t seed, std::uint64_t offset) noexcept;
void fill_pattern(std::uint64_t seed, std::uint64_t offset, char* out, std::size_t size) noexcept;
std::string pattern(std::uint64_t seed, std::size_t size);
// Offset within `bytes` of the first byte that differs from the pattern at `offset`, or npos.
std::size_t pattern_mismatch(std::uint64_t seed, std::uint64_t offset,
                             std::string_view bytes) noexcept;

// Counts shared by a group of clients, so a test can wait for "all done" in O(1).
struct Tally {
  std::size_t done = 0;
  std::size_t failed = 0;
};

// Sends `payload` once, checks that exactly it comes back, then closes (or stays open).
class EchoClient : public Client {
 public:
  EchoClient(std::string payload, Tally* tally = nullptr, bool stay_open = false)
      : payload_(std::move(payload)), tally_(tally), stay_open_(stay_open) {}

  // Another round on an open client whose last round is done; false if it cannot.
  bool again(std::string payload, Tally* tally);
  bool done() const noexcept { return done_; }
  bool failed() const noexcept { return !failure_.empty(); }
  const std::string& failure() const noexcept { return failure_; }
  Clock::time_point finished_at() const noexcept { return finished_at_; }

  void on_connected() override { send(payload_); }
  void on_data(std::string_view bytes) override;
  void on_closed(int error) override;

 private:
  void fail(std::string why);

  std::string payload_;
  Tally* tally_;
  std::size_t checked_ = 0;
  Clock::time_point finished_at_{};
  std::string failure_;
  bool stay_open_;
  bool done_ = false;
};

// Streams the pattern of `seed` and checks the echo as it arrives. `window` bounds the bytes
// sent but not yet echoed (0: none, send as fast as the socket takes). After stop_sending() it
// closes once everything sent has come back.
class StreamEchoClient : public Client {
 public:
  explicit StreamEchoClient(std::uint64_t seed, std::size_t window = 0,
                            std::size_t chunk = 64 * 1024)
      : seed_(seed), window_(window), chunk_(chunk) {}

  void stop_sending();
  bool done() const noexcept { return done_; }
  bool failed() const noexcept { return !failure_.empty(); }
  const std::string& failure() const noexcept { return failure_; }
  std::uint64_t verified() const noexcept { return bytes_received(); }

  void on_connected() override { top_up(); }
  void on_drained() override { top_up(); }
  void on_data(std::string_view bytes) override;

 private:
  void fail(std::string why);
  void top_up();

  std::uint64_t seed_;
  std::size_t window_;
  std::size_t chunk_;
  std::uint64_t generated_ = 0;
  std::uint64_t checked_ = 0;
  std::string scratch_;
  std::string failure_;
  bool sending_ = true;
  bool done_ = false;
};

// Splits what arrives into lines ("\n" removed) for on_line.
class LineClient : public Client {
 public:
  virtual void on_line(std::string_view line) = 0;
  void on_data(std::string_view bytes) override;

 private:
  std::string partial_;
};

}  // namespace test
