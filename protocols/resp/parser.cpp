#include "protocols/resp/parser.hpp"

#include <algorithm>
#include <cstring>
#include <limits>

namespace reactor::protocols::resp {
namespace {

constexpr std::string_view kTooBigInline = "Protocol error: too big inline request";
constexpr std::string_view kUnbalanced = "Protocol error: unbalanced quotes in request";
constexpr std::string_view kTooBigCount = "Protocol error: too big mbulk count string";
constexpr std::string_view kBadCount = "Protocol error: invalid multibulk length";
constexpr std::string_view kTooBigBulkCount = "Protocol error: too big bulk count string";
constexpr std::string_view kBadBulk = "Protocol error: invalid bulk length";

bool is_space(char c) noexcept {
  return c == ' ' || c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\f';
}

int hex_digit(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Splits an inline line the way redis-cli quotes it (sdssplitargs): whitespace separates,
// "double quotes" take \n \r \t \b \a \\ \" \xHH escapes, 'single quotes' take \'. A closing
// quote must be followed by whitespace or the end. Appends to `out`, returns false if unbalanced.
bool split_inline(std::string_view line, std::string& out, std::vector<std::size_t>& ends) {
  std::size_t i = 0;
  const std::size_t n = line.size();
  while (true) {
    while (i < n && is_space(line[i])) ++i;
    if (i == n) return true;
    bool in_double = false, in_single = false;
    while (true) {
      if (in_double) {
        if (i == n) return false;
        const char c = line[i];
        if (c == '\\' && i + 3 < n && line[i + 1] == 'x' && hex_digit(line[i + 2]) >= 0 &&
            hex_digit(line[i + 3]) >= 0) {
          out.push_back(static_cast<char>(hex_digit(line[i + 2]) * 16 + hex_digit(line[i + 3])));
          i += 4;
        } else if (c == '\\' && i + 1 < n) {
          const char e = line[i + 1];
          out.push_back(e == 'n'   ? '\n'
                        : e == 'r' ? '\r'
                        : e == 't' ? '\t'
                        : e == 'b' ? '\b'
                        : e == 'a' ? '\a'
                                   : e);
          i += 2;
        } else if (c == '"') {
          if (i + 1 < n && !is_space(line[i + 1])) return false;
          in_double = false;
          ++i;
          break;
        } else {
          out.push_back(c);
          ++i;
        }
      } else if (in_single) {
        if (i == n) return false;
        const char c = line[i];
        if (c == '\\' && i + 1 < n && line[i + 1] == '\'') {
          out.push_back('\'');
          i += 2;
        } else if (c == '\'') {
          if (i + 1 < n && !is_space(line[i + 1])) return false;
          in_single = false;
          ++i;
          break;
        } else {
          out.push_back(c);
          ++i;
        }
      } else {
        if (i == n || is_space(line[i])) break;
        const char c = line[i++];
        if (c == '"') {
          in_double = true;
        } else if (c == '\'') {
          in_single = true;
        } else {
          out.push_back(c);
        }
      }
    }
    ends.push_back(out.size());
  }
}

}  // namespace

bool parse_int64(std::string_view text, std::int64_t& value) noexcept {
  if (text.empty() || text.size() > 20) return false;
  if (text == "0") {
    value = 0;
    return true;
  }
  std::size_t i = 0;
  const bool negative = text[0] == '-';
  if (negative) ++i;
  if (i == text.size() || text[i] < '1' || text[i] > '9') return false;
  std::uint64_t v = 0;
  for (; i < text.size(); ++i) {
    const char c = text[i];
    if (c < '0' || c > '9') return false;
    const std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (v > (std::numeric_limits<std::uint64_t>::max() - d) / 10) return false;
    v = v * 10 + d;
  }
  constexpr std::uint64_t kMax =
      static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  if (negative) {
    if (v > kMax + 1) return false;
    value =
        v == kMax + 1 ? std::numeric_limits<std::int64_t>::min() : -static_cast<std::int64_t>(v);
  } else {
    if (v > kMax) return false;
    value = static_cast<std::int64_t>(v);
  }
  return true;
}

ParseResult RequestParser::parse(std::string_view input) {
  args_.clear();
  if (input.empty()) return {};
  return input[0] == '*' ? parse_multibulk(input) : parse_inline(input);
}

ParseResult RequestParser::parse_inline(std::string_view input) {
  const std::size_t newline = input.find('\n');
  if (newline == std::string_view::npos) {
    if (input.size() > limits_.max_inline) return {ParseStatus::error, 0, kTooBigInline};
    return {};
  }
  if (newline > limits_.max_inline) return {ParseStatus::error, 0, kTooBigInline};
  std::string_view line = input.substr(0, newline);
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  scratch_.clear();
  ends_.clear();
  if (!split_inline(line, scratch_, ends_)) return {ParseStatus::error, 0, kUnbalanced};
  std::size_t start = 0;
  for (const std::size_t end : ends_) {
    args_.emplace_back(scratch_.data() + start, end - start);
    start = end;
  }
  return {ParseStatus::complete, newline + 1, {}};
}

ParseResult RequestParser::parse_multibulk(std::string_view input) {
  // A header line "*N\r\n" or "$L\r\n" starting at `pos`; its number, or a status.
  auto header = [&](std::size_t pos, char kind, std::int64_t& number, std::size_t& next,
                    std::string_view too_big) -> ParseResult {
    const std::size_t limit = input.size() - pos;
    const void* cr = std::memchr(input.data() + pos, '\r', limit);
    if (cr == nullptr) {
      if (limit > limits_.max_inline) return {ParseStatus::error, 0, too_big};
      return {};
    }
    const std::size_t end = static_cast<std::size_t>(static_cast<const char*>(cr) - input.data());
    if (end - pos > limits_.max_inline) return {ParseStatus::error, 0, too_big};
    if (end + 1 >= input.size()) return {};  // the '\n' is still to come
    next = end + 2;
    if (input[pos] != kind) {
      error_ = "Protocol error: expected '$', got '";
      error_ += input[pos];
      error_ += '\'';
      return {ParseStatus::error, 0, error_};
    }
    if (!parse_int64(input.substr(pos + 1, end - pos - 1), number)) {
      return {ParseStatus::error, 0, {}};
    }
    return {ParseStatus::complete, 0, {}};
  };

  std::int64_t count = 0;
  std::size_t pos = 0;
  ParseResult r = header(0, '*', count, pos, kTooBigCount);
  if (r.status == ParseStatus::error && r.error.empty()) r.error = kBadCount;
  if (r.status != ParseStatus::complete) return r;
  if (count > static_cast<std::int64_t>(limits_.max_multibulk)) {
    return {ParseStatus::error, 0, kBadCount};
  }
  if (count <= 0) return {ParseStatus::complete, pos, {}};
  // Grows as arguments arrive: a 10-byte "*1048576" header must not cost 16 MiB up front.
  args_.reserve(std::min<std::size_t>(static_cast<std::size_t>(count), 1024));
  for (std::int64_t i = 0; i < count; ++i) {
    if (pos >= input.size()) {
      args_.clear();
      return {};
    }
    std::int64_t length = 0;
    r = header(pos, '$', length, pos, kTooBigBulkCount);
    if (r.status == ParseStatus::complete &&
        (length < 0 || static_cast<std::uint64_t>(length) > limits_.max_bulk)) {
      r = {ParseStatus::error, 0, kBadBulk};
    }
    if (r.status == ParseStatus::error && r.error.empty()) r.error = kBadBulk;
    if (r.status != ParseStatus::complete) {
      args_.clear();
      return r;
    }
    const std::size_t n = static_cast<std::size_t>(length);
    if (input.size() - pos < n + 2) {
      args_.clear();
      return {};
    }
    args_.push_back(input.substr(pos, n));
    pos += n + 2;  // like Redis, the "\r\n" after the data is skipped, not checked
  }
  return {ParseStatus::complete, pos, {}};
}

}  // namespace reactor::protocols::resp
