#include "protocols/http/parser.hpp"

#include <cstring>

namespace reactor::http {
namespace {

constexpr std::size_t npos = std::string_view::npos;

bool is_token_char(char c) noexcept {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::strchr("!#$%&'*+-.^_`|~", c) != nullptr && c != '\0';
}

bool is_token(std::string_view s) noexcept {
  if (s.empty()) return false;
  for (const char c : s) {
    if (!is_token_char(c)) return false;
  }
  return true;
}

bool is_ctl(char c) noexcept {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

char lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) noexcept {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// The line without its "\n" and an optional "\r" before it.
std::string_view strip_eol(std::string_view line) noexcept {
  if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
  return line;
}

// Where the head ends (just past its blank line), searching for the '\n' that ends the last
// header line from `from`; npos if the input does not yet show it.
std::size_t find_head_end(std::string_view bytes, std::size_t from) noexcept {
  while (from < bytes.size()) {
    const void* hit = std::memchr(bytes.data() + from, '\n', bytes.size() - from);
    if (hit == nullptr) return npos;
    const std::size_t i = static_cast<std::size_t>(static_cast<const char*>(hit) - bytes.data());
    if (i + 1 >= bytes.size()) return npos;
    if (bytes[i + 1] == '\n') return i + 2;
    if (bytes[i + 1] == '\r') {
      if (i + 2 >= bytes.size()) return npos;
      if (bytes[i + 2] == '\n') return i + 3;
    }
    from = i + 1;
  }
  return npos;
}

ParseResult fail(int status) noexcept {
  return {ParseStatus::error, 0, status};
}

bool parse_version(std::string_view v, int& major, int& minor) noexcept {
  if (v.size() != 8 || v.substr(0, 5) != "HTTP/" || v[6] != '.') return false;
  if (v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9') return false;
  major = v[5] - '0';
  minor = v[7] - '0';
  return true;
}

// method SP request-target SP HTTP-version; 0 if well formed, else the status to answer.
int parse_request_line(std::string_view line, Request& request) noexcept {
  const std::size_t sp1 = line.find(' ');
  if (sp1 == npos) return 400;
  const std::size_t sp2 = line.find(' ', sp1 + 1);
  if (sp2 == npos || line.find(' ', sp2 + 1) != npos) return 400;
  request.method = line.substr(0, sp1);
  request.target = line.substr(sp1 + 1, sp2 - sp1 - 1);
  if (!is_token(request.method) || request.target.empty()) return 400;
  for (const char c : request.target) {
    if (is_ctl(c) || static_cast<unsigned char>(c) >= 0x80) return 400;
  }
  int major = 0, minor = 0;
  if (!parse_version(line.substr(sp2 + 1), major, minor)) return 400;
  if (major != 1) return 505;
  request.minor_version = minor;
  return 0;
}

bool parse_content_length(std::string_view value, unsigned long long& out) noexcept {
  if (value.empty() || value.size() > 19) return false;
  unsigned long long n = 0;
  for (const char c : value) {
    if (c < '0' || c > '9') return false;
    n = n * 10 + static_cast<unsigned>(c - '0');
  }
  out = n;
  return true;
}

void note_connection_tokens(std::string_view value, Request& request) noexcept {
  while (!value.empty()) {
    const std::size_t comma = value.find(',');
    const std::string_view token = trim_ows(value.substr(0, comma));
    if (iequals(token, "close")) request.connection_close = true;
    if (iequals(token, "keep-alive")) request.connection_keep_alive = true;
    if (comma == npos) break;
    value.remove_prefix(comma + 1);
  }
}

// One "name: value" line; 0 if accepted, else the status to answer.
int parse_header(std::string_view line, Request& request) noexcept {
  if (line.front() == ' ' || line.front() == '\t') return 400;  // obsolete line folding
  const std::size_t colon = line.find(':');
  if (colon == npos) return 400;
  const std::string_view name = line.substr(0, colon);
  if (!is_token(name)) return 400;  // also rejects whitespace before the colon
  const std::string_view value = trim_ows(line.substr(colon + 1));
  for (const char c : value) {
    if (is_ctl(c) && c != '\t') return 400;
  }
  if (iequals(name, "host")) {
    if (request.has_host) return 400;
    request.has_host = true;
    request.host = value;
  } else if (iequals(name, "connection")) {
    note_connection_tokens(value, request);
  } else if (iequals(name, "content-length")) {
    unsigned long long n = 0;
    if (!parse_content_length(value, n)) return 400;
    if (request.has_content_length && n != request.content_length) return 400;
    request.has_content_length = true;
    request.content_length = n;
  } else if (iequals(name, "transfer-encoding")) {
    request.has_transfer_encoding = true;
  } else if (iequals(name, "if-modified-since")) {
    request.if_modified_since = value;
  } else if (iequals(name, "if-range")) {
    request.if_range = value;
  } else if (iequals(name, "range")) {
    request.range = value;
  }
  return 0;
}

}  // namespace

ParseResult parse_request(std::string_view bytes, Request& request, std::size_t scanned) {
  request = Request{};
  std::size_t start = 0;
  while (start < bytes.size() && (bytes[start] == '\n' || bytes[start] == '\r')) {
    if (bytes[start] == '\r' && (start + 1 >= bytes.size() || bytes[start + 1] != '\n')) break;
    start += bytes[start] == '\r' ? 2 : 1;
  }
  if (start > kMaxRequestLine) return fail(400);
  if (start == bytes.size()) return {};

  const void* nl = std::memchr(bytes.data() + start, '\n', bytes.size() - start);
  if (nl == nullptr) {
    return bytes.size() - start > kMaxRequestLine ? fail(414) : ParseResult{};
  }
  const std::size_t line_end =
      static_cast<std::size_t>(static_cast<const char*>(nl) - bytes.data());
  const std::string_view line = strip_eol(bytes.substr(start, line_end - start));
  if (line.size() > kMaxRequestLine) return fail(414);

  const std::size_t from = scanned >= 3 && scanned - 3 > line_end ? scanned - 3 : line_end;
  const std::size_t head_end = find_head_end(bytes, from);
  const std::size_t header_limit = kMaxHeaderBytes + 2;  // the fields plus the blank line
  if (head_end == npos) {
    return bytes.size() - line_end - 1 > header_limit ? fail(431) : ParseResult{};
  }
  if (head_end - line_end - 1 > header_limit) return fail(431);

  if (line.find('\r') != npos) return fail(400);
  if (const int status = parse_request_line(line, request); status != 0) return fail(status);

  std::size_t pos = line_end + 1;
  while (true) {
    const std::size_t end = bytes.find('\n', pos);  // found: head_end is past the last one
    const std::string_view field = strip_eol(bytes.substr(pos, end - pos));
    pos = end + 1;
    if (field.empty()) break;
    if (field.find('\r') != npos) return fail(400);
    if (++request.header_fields > kMaxHeaderFields) return fail(431);
    if (const int status = parse_header(field, request); status != 0) return fail(status);
  }
  if (request.minor_version >= 1 && !request.has_host) return fail(400);
  if (request.has_transfer_encoding && request.has_content_length) return fail(400);
  return {ParseStatus::complete, head_end, 0};
}

}  // namespace reactor::http
