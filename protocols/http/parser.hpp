// HTTP/1.x request head parser: a pure function over bytes, no I/O, no allocation. The parsed
// Request points into the bytes it was given, so it is valid only as long as they are.
#pragma once

#include <cstddef>
#include <string_view>

namespace reactor::http {

inline constexpr std::size_t kMaxRequestLine = 8 * 1024;   // longer: 414
inline constexpr std::size_t kMaxHeaderBytes = 32 * 1024;  // header fields after the request line
inline constexpr std::size_t kMaxHeaderFields = 100;       // more of either: 431

struct Request {
  std::string_view method;  // case-sensitive token: "GET", "HEAD", ...
  std::string_view target;  // as sent: "/a%20b?q=1"
  int minor_version = 1;    // HTTP/1.minor; 2..9 are served as 1.1
  // The headers the server acts on (the last one wins; Connection tokens are combined).
  std::string_view host;
  std::string_view if_modified_since;
  std::string_view if_range;
  std::string_view range;
  bool has_host = false;
  bool connection_close = false;
  bool connection_keep_alive = false;
  bool has_transfer_encoding = false;
  bool has_content_length = false;
  unsigned long long content_length = 0;
  std::size_t header_fields = 0;
};

enum class ParseStatus { incomplete, complete, error };

struct ParseResult {
  ParseStatus status = ParseStatus::incomplete;
  std::size_t consumed = 0;  // complete: bytes of the head, blank line included
  int error_status = 0;      // error: 400, 414, 431 or 505
};

// Parses one request head from the front of `bytes`. `scanned` is how many bytes an earlier call
// on the same (grown) input has already searched for the end of the head without finding it; 0
// is always correct, larger values only make slow byte-at-a-time clients cheap. Lines end in
// CRLF or a bare LF. Empty lines before the request line are skipped (RFC 9112 section 2.2).
// Limits are enforced while incomplete, so nothing waits for a head that is already too big.
ParseResult parse_request(std::string_view bytes, Request& request, std::size_t scanned = 0);

}  // namespace reactor::http
