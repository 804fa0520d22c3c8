#include "protocols/http/response.hpp"

#include <charconv>
#include <cstring>
#include <ctime>

namespace reactor::http {
namespace {

constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
constexpr const char* kLongDays[] = {"Sunday",   "Monday", "Tuesday", "Wednesday",
                                     "Thursday", "Friday", "Saturday"};
constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                   "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

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

// Consumes a run of digits (at most `max`) from the front of `s`.
bool take_number(std::string_view& s, int min_digits, int max_digits, int& value) noexcept {
  int n = 0, digits = 0;
  while (digits < max_digits && !s.empty() && s.front() >= '0' && s.front() <= '9') {
    n = n * 10 + (s.front() - '0');
    s.remove_prefix(1);
    ++digits;
  }
  value = n;
  return digits >= min_digits;
}

bool take(std::string_view& s, std::string_view literal) noexcept {
  if (!s.starts_with(literal)) return false;
  s.remove_prefix(literal.size());
  return true;
}

bool take_month(std::string_view& s, int& month) noexcept {
  for (int m = 0; m < 12; ++m) {
    if (s.starts_with(kMonths[m])) {
      s.remove_prefix(3);
      month = m;
      return true;
    }
  }
  return false;
}

bool take_time(std::string_view& s, std::tm& tm) noexcept {
  return take_number(s, 2, 2, tm.tm_hour) && take(s, ":") && take_number(s, 2, 2, tm.tm_min) &&
         take(s, ":") && take_number(s, 2, 2, tm.tm_sec);
}

bool take_day_name(std::string_view& s, const char* const (&names)[7]) noexcept {
  for (const char* name : names) {
    if (take(s, name)) return true;
  }
  return false;
}

std::optional<std::int64_t> to_seconds(std::tm& tm) noexcept {
  if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60) {
    return std::nullopt;
  }
  const std::time_t t = ::timegm(&tm);
  if (t == static_cast<std::time_t>(-1)) return std::nullopt;
  return static_cast<std::int64_t>(t);
}

bool parse_u64(std::string_view s, std::uint64_t& value) noexcept {
  if (s.empty()) return false;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  return ec == std::errc() && end == s.data() + s.size();
}

}  // namespace

std::string_view reason_phrase(int status) noexcept {
  switch (status) {
    case 200:
      return "OK";
    case 206:
      return "Partial Content";
    case 301:
      return "Moved Permanently";
    case 304:
      return "Not Modified";
    case 400:
      return "Bad Request";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 411:
      return "Length Required";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 416:
      return "Range Not Satisfiable";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 503:
      return "Service Unavailable";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

std::string_view content_type_for(std::string_view path) noexcept {
  struct Type {
    std::string_view extension, type;
  };
  static constexpr Type kTypes[] = {
      {"html", "text/html; charset=utf-8"},
      {"htm", "text/html; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"},
      {"mjs", "text/javascript; charset=utf-8"},
      {"json", "application/json"},
      {"txt", "text/plain; charset=utf-8"},
      {"md", "text/plain; charset=utf-8"},
      {"csv", "text/csv; charset=utf-8"},
      {"xml", "application/xml"},
      {"svg", "image/svg+xml"},
      {"png", "image/png"},
      {"jpg", "image/jpeg"},
      {"jpeg", "image/jpeg"},
      {"gif", "image/gif"},
      {"webp", "image/webp"},
      {"ico", "image/x-icon"},
      {"wasm", "application/wasm"},
      {"pdf", "application/pdf"},
      {"woff", "font/woff"},
      {"woff2", "font/woff2"},
      {"mp4", "video/mp4"},
      {"webm", "video/webm"},
      {"gz", "application/gzip"},
  };
  const std::size_t slash = path.rfind('/');
  const std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  const std::size_t dot = name.rfind('.');
  if (dot != std::string_view::npos && dot + 1 < name.size()) {
    const std::string_view extension = name.substr(dot + 1);
    for (const Type& t : kTypes) {
      if (iequals(t.extension, extension)) return t.type;
    }
  }
  return "application/octet-stream";
}

std::string format_http_date(std::int64_t seconds_since_epoch) {
  const std::time_t t = static_cast<std::time_t>(seconds_since_epoch);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char text[64];
  std::snprintf(text, sizeof text, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday],
                tm.tm_mday, kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  return text;
}

std::optional<std::int64_t> parse_http_date(std::string_view s) {
  std::tm tm{};
  int year = 0;
  std::string_view rest = s;
  if (rest.size() > 3 && rest[3] == ',') {  // IMF-fixdate
    if (!take_day_name(rest, kDays) || !take(rest, ", ") || !take_number(rest, 2, 2, tm.tm_mday) ||
        !take(rest, " ") || !take_month(rest, tm.tm_mon) || !take(rest, " ") ||
        !take_number(rest, 4, 4, year) || !take(rest, " ") || !take_time(rest, tm) ||
        rest != " GMT") {
      return std::nullopt;
    }
  } else if (rest.size() > 3 && rest[3] == ' ') {  // asctime
    if (!take_day_name(rest, kDays) || !take(rest, " ") || !take_month(rest, tm.tm_mon) ||
        !take(rest, " ")) {
      return std::nullopt;
    }
    if (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    if (!take_number(rest, 1, 2, tm.tm_mday) || !take(rest, " ") || !take_time(rest, tm) ||
        !take(rest, " ") || !take_number(rest, 4, 4, year) || !rest.empty()) {
      return std::nullopt;
    }
  } else {  // RFC 850
    if (!take_day_name(rest, kLongDays) || !take(rest, ", ") ||
        !take_number(rest, 2, 2, tm.tm_mday) || !take(rest, "-") || !take_month(rest, tm.tm_mon) ||
        !take(rest, "-") || !take_number(rest, 2, 2, year) || !take(rest, " ") ||
        !take_time(rest, tm) || rest != " GMT") {
      return std::nullopt;
    }
    year += year < 70 ? 2000 : 1900;
  }
  tm.tm_year = year - 1900;
  return to_seconds(tm);
}

RangeKind parse_range(std::string_view header, std::uint64_t size, ByteRange& range) noexcept {
  while (!header.empty() && (header.back() == ' ' || header.back() == '\t'))
    header.remove_suffix(1);
  if (header.size() < 6 || !iequals(header.substr(0, 6), "bytes=")) return RangeKind::ignore;
  const std::string_view spec = header.substr(6);
  if (spec.find(',') != std::string_view::npos) return RangeKind::ignore;
  const std::size_t dash = spec.find('-');
  if (dash == std::string_view::npos) return RangeKind::ignore;
  const std::string_view a = spec.substr(0, dash);
  const std::string_view b = spec.substr(dash + 1);
  std::uint64_t first = 0, last = 0;
  if (a.empty()) {  // suffix: the last n bytes
    if (!parse_u64(b, last)) return RangeKind::ignore;
    if (last == 0 || size == 0) return RangeKind::unsatisfiable;
    range = {last >= size ? 0 : size - last, size - 1};
    return RangeKind::satisfiable;
  }
  if (!parse_u64(a, first)) return RangeKind::ignore;
  if (b.empty()) {
    last = UINT64_MAX;
  } else if (!parse_u64(b, last) || last < first) {
    return RangeKind::ignore;
  }
  if (first >= size) return RangeKind::unsatisfiable;
  range = {first, last >= size ? size - 1 : last};
  return RangeKind::satisfiable;
}

void HeadWriter::status_line(int status) {
  out_ += "HTTP/1.1 ";
  char digits[8];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, status);
  out_.append(digits, end);
  out_ += ' ';
  out_ += reason_phrase(status);
  out_ += "\r\n";
}

void HeadWriter::header(std::string_view name, std::string_view value) {
  out_ += name;
  out_ += ": ";
  out_ += value;
  out_ += "\r\n";
}

void HeadWriter::header(std::string_view name, std::uint64_t value) {
  char digits[24];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, value);
  header(name, std::string_view(digits, static_cast<std::size_t>(end - digits)));
}

}  // namespace reactor::http
