// LineSplitter: turns a byte stream into lines ending in "\n" or "\r\n", across arbitrary chunk
// boundaries, holding at most max_line + 1 bytes of an unfinished line. Pure: no I/O.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace reactor::protocols {

class LineSplitter {
 public:
  static constexpr std::size_t kDefaultMaxLine = 4096;

  struct Event {
    enum class Kind : std::uint8_t {
      line,      // `text` is one line without its "\n" or "\r\n"
      too_long,  // a line over max_line bytes; reported once, its bytes up to "\n" are dropped
    };
    Kind kind;
    std::string_view text;
  };

  explicit LineSplitter(std::size_t max_line = kDefaultMaxLine) noexcept : max_line_(max_line) {}

  // Takes bytes from the front of `input` up to the next event and returns it; nullopt once
  // `input` is used up (an unfinished line is kept for the next call). An event's text is valid
  // until the next call or until the bytes behind `input` go away, whichever comes first.
  std::optional<Event> next(std::span<const std::byte>& input);

  // At end of stream: the unterminated last line, if there is one and it was not too long.
  std::optional<std::string_view> finish();

  std::size_t max_line() const noexcept { return max_line_; }
  // Bytes of the unfinished line held right now (at most max_line + 1).
  std::size_t held() const noexcept { return partial_.size(); }

 private:
  std::size_t max_line_;
  std::string partial_;        // the unfinished line
  bool discarding_ = false;    // inside an over-long line: drop bytes up to its "\n"
  bool partial_lent_ = false;  // the last event's text points into partial_: clear it first
};

}  // namespace reactor::protocols
