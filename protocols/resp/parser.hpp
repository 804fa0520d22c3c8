// The RESP2 request parser: a pure function over bytes. It reads one request (a multibulk
// "*N\r\n$L\r\n...\r\n" array or an inline "GET key\r\n" line) from the front of the input and
// says how many bytes it took. Arguments are views into the input (multibulk) or into the
// parser's scratch (inline, where quotes are unescaped), valid until the next parse call.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace reactor::protocols::resp {

struct ParserLimits {
  std::size_t max_inline = 64 * 1024;           // an inline request, or a "*N"/"$L" header line
  std::size_t max_bulk = 512ull * 1024 * 1024;  // proto-max-bulk-len
  std::size_t max_multibulk = 1024 * 1024;      // arguments in one request
};

enum class ParseStatus {
  complete,    // `args` holds one request (possibly empty: a blank line, "*0"); `consumed` set
  incomplete,  // more bytes are needed; nothing was consumed
  error,       // a protocol error: `error` holds Redis's text ("Protocol error: ...")
};

struct ParseResult {
  ParseStatus status = ParseStatus::incomplete;
  std::size_t consumed = 0;
  std::string_view error;  // static text or the parser's own, valid until the next parse
};

class RequestParser {
 public:
  explicit RequestParser(ParserLimits limits = {}) : limits_(limits) {}

  ParseResult parse(std::string_view input);
  // The request's arguments after a `complete` parse.
  const std::vector<std::string_view>& args() const noexcept { return args_; }
  const ParserLimits& limits() const noexcept { return limits_; }

 private:
  ParseResult parse_multibulk(std::string_view input);
  ParseResult parse_inline(std::string_view input);

  ParserLimits limits_;
  std::vector<std::string_view> args_;
  std::string scratch_;            // unescaped inline arguments
  std::vector<std::size_t> ends_;  // where each inline argument ends in scratch_
  std::string error_;              // "expected '$', got 'x'" names the byte
};

// Redis's string2ll: optional '-', digits, no leading zeros, no spaces, fits in int64.
bool parse_int64(std::string_view text, std::int64_t& value) noexcept;

}  // namespace reactor::protocols::resp
