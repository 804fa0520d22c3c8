#include "clients.hpp"

#include <cstring>

namespace test {
namespace {

std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

std::uint64_t pattern_word(std::uint64_t seed, std::uint64_t word) noexcept {
  return splitmix64(seed * 0xD1B54A32D192ED03ull + word);
}

}  // namespace

char pattern_byte(std::uint64_t seed, std::uint64_t offset) noexcept {
  return static_cast<char>(pattern_word(seed, offset / 8) >> (8 * (offset % 8)));
}

void fill_pattern(std::uint64_t seed, std::uint64_t offset, char* out, std::size_t size) noexcept {
  std::size_t i = 0;
  while (i < size && (offset + i) % 8 != 0) {
    out[i] = pattern_byte(seed, offset + i);
    ++i;
  }
  for (; i + 8 <= size; i += 8) {
    const std::uint64_t word = pattern_word(seed, (offset + i) / 8);
    for (int b = 0; b < 8; ++b) out[i + b] = static_cast<char>(word >> (8 * b));
  }
  for (; i < size; ++i) out[i] = pattern_byte(seed, offset + i);
}

std::string pattern(std::uint64_t seed, std::size_t size) {
  std::string out(size, '\0');
  fill_pattern(seed, 0, out.data(), size);
  return out;
}

std::size_t pattern_mismatch(std::uint64_t seed, std::uint64_t offset,
                             std::string_view bytes) noexcept {
  char expected[4096];
  for (std::size_t done = 0; done < bytes.size();) {
    const std::size_t n = std::min(sizeof expected, bytes.size() - done);
    fill_pattern(seed, offset + done, expected, n);
    if (std::memcmp(expected, bytes.data() + done, n) != 0) {
      for (std::size_t i = 0; i < n; ++i) {
        if (expected[i] != bytes[done + i]) return done + i;
      }
    }
    done += n;
  }
  return std::string_view::npos;
}

void EchoClient::on_data(std::string_view bytes) {
  if (done_ || failed()) return fail("bytes after the echo was complete");
  if (bytes.size() > payload_.size() - checked_) return fail("more bytes back than sent");
  if (std::memcmp(bytes.data(), payload_.data() + checked_, bytes.size()) != 0) {
    return fail("echo differs near byte " + std::to_string(checked_));
  }
  checked_ += bytes.size();
  if (checked_ < payload_.size()) return;
  done_ = true;
  finished_at_ = Clock::now();
  if (tally_ != nullptr) ++tally_->done;
  std::string().swap(payload_);
  if (!stay_open_) close();
}

bool EchoClient::again(std::string payload, Tally* tally) {
  if (!done_ || failed() || !is_open()) return false;
  payload_ = std::move(payload);
  tally_ = tally;
  checked_ = 0;
  done_ = false;
  send(payload_);
  return true;
}

void EchoClient::on_closed(int error) {
  if (done_) return;
  fail((connected() ? "closed by the server after " + std::to_string(checked_) + " of " +
                          std::to_string(payload_.size()) + " bytes"
                    : std::string("connect failed")) +
       (error != 0 ? std::string(": ") + std::strerror(error) : std::string(" (EOF)")));
}

void EchoClient::fail(std::string why) {
  if (!failure_.empty()) return;
  failure_ = std::move(why);
  if (tally_ != nullptr) ++tally_->failed;
  close();
}

void StreamEchoClient::stop_sending() {
  sending_ = false;
  if (is_open() && checked_ == generated_ && !failed()) {
    done_ = true;
    close();
  }
}

void StreamEchoClient::top_up() {
  if (!sending_ || queued() > 0) return;
  std::size_t n = chunk_;
  if (window_ != 0) {
    const std::uint64_t in_flight = generated_ - checked_;
    if (in_flight >= window_) return;
    n = std::min<std::size_t>(n, window_ - in_flight);
  }
  scratch_.resize(n);
  fill_pattern(seed_, generated_, scratch_.data(), n);
  generated_ += n;
  send(scratch_);
}

void StreamEchoClient::on_data(std::string_view bytes) {
  if (failed()) return;
  if (checked_ + bytes.size() > generated_) return fail("more bytes back than sent");
  const std::size_t bad = pattern_mismatch(seed_, checked_, bytes);
  if (bad != std::string_view::npos) {
    return fail("echo differs at byte " + std::to_string(checked_ + bad));
  }
  checked_ += bytes.size();
  if (sending_) return top_up();
  if (checked_ == generated_) {
    done_ = true;
    close();
  }
}

void StreamEchoClient::fail(std::string why) {
  if (failure_.empty()) failure_ = std::move(why);
  close();
}

void LineClient::on_data(std::string_view bytes) {
  std::size_t start = 0;
  for (;;) {
    const std::size_t newline = bytes.find('\n', start);
    if (newline == std::string_view::npos) break;
    if (partial_.empty()) {
      on_line(bytes.substr(start, newline - start));
    } else {
      partial_.append(bytes.substr(start, newline - start));
      const std::string line = std::move(partial_);
      partial_.clear();
      on_line(line);
    }
    if (!is_open()) return;
    start = newline + 1;
  }
  partial_.append(bytes.substr(start));
}

}  // namespace test
