// Pieces of an HTTP/1.1 response: reason phrases, Content-Type by extension, HTTP dates and
// byte ranges. Pure functions, no I/O.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace reactor::http {

std::string_view reason_phrase(int status) noexcept;

// By the path's extension, case-insensitive; "application/octet-stream" when unknown.
std::string_view content_type_for(std::string_view path) noexcept;

// IMF-fixdate, always 29 characters: "Sun, 06 Nov 1994 08:49:37 GMT".
std::string format_http_date(std::int64_t seconds_since_epoch);
// IMF-fixdate, RFC 850 ("Sunday, 06-Nov-94 08:49:37 GMT") or asctime ("Sun Nov  6 08:49:37
// 1994"); nullopt if it is none of them.
std::optional<std::int64_t> parse_http_date(std::string_view text);

struct ByteRange {
  std::uint64_t first = 0;
  std::uint64_t last = 0;  // inclusive
};
enum class RangeKind { ignore, satisfiable, unsatisfiable };

// One "bytes=" range against a representation of `size` bytes: "a-b", "a-" or "-n". A range
// header this server does not serve (several ranges, another unit, malformed) is `ignore`: the
// whole file is sent with 200, which RFC 9110 allows.
RangeKind parse_range(std::string_view header, std::uint64_t size, ByteRange& range) noexcept;

// Appends "Name: value\r\n" lines to a response head.
class HeadWriter {
 public:
  explicit HeadWriter(std::string& out) : out_(out) {}
  void status_line(int status);
  void header(std::string_view name, std::string_view value);
  void header(std::string_view name, std::uint64_t value);
  void end() { out_ += "\r\n"; }

 private:
  std::string& out_;
};

}  // namespace reactor::http
