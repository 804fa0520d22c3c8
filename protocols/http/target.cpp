#include "protocols/http/target.hpp"

namespace reactor::http {
namespace {

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

bool starts_with_ignoring_case(std::string_view s, std::string_view prefix) noexcept {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    char c = s[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != prefix[i]) return false;
  }
  return true;
}

}  // namespace

DecodedTarget decode_target(std::string_view target) {
  DecodedTarget out;
  for (const std::string_view scheme : {"http://", "https://"}) {
    if (starts_with_ignoring_case(target, scheme)) {
      const std::size_t slash = target.find('/', scheme.size());
      target = slash == std::string_view::npos ? std::string_view("/") : target.substr(slash);
      break;
    }
  }
  if (target.empty() || target.front() != '/') {
    out.status = 400;
    return out;
  }
  const std::size_t cut = target.find_first_of("?#");
  out.raw = target.substr(0, cut);
  if (cut != std::string_view::npos && target[cut] == '?') {
    out.query = target.substr(cut, target.find('#', cut) - cut);
  }

  std::string decoded;
  decoded.reserve(out.raw.size());
  for (std::size_t i = 0; i < out.raw.size(); ++i) {
    char c = out.raw[i];
    if (c == '%') {
      const int hi = i + 2 < out.raw.size() ? hex_value(out.raw[i + 1]) : -1;
      const int lo = hi >= 0 ? hex_value(out.raw[i + 2]) : -1;
      if (lo < 0) {
        out.status = 400;
        return out;
      }
      c = static_cast<char>(hi * 16 + lo);
      i += 2;
    }
    if (c == '\0' || c == '\\') {
      out.status = 404;
      return out;
    }
    decoded += c;
  }

  out.path = "/";
  std::size_t pos = 1;
  while (pos <= decoded.size()) {
    std::size_t end = decoded.find('/', pos);
    if (end == std::string::npos) end = decoded.size();
    const std::string_view segment = std::string_view(decoded).substr(pos, end - pos);
    pos = end + 1;
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") {
      out.status = 404;
      out.path.clear();
      return out;
    }
    if (out.path.size() > 1) out.path += '/';
    out.path.insert(out.path.end(), segment.begin(), segment.end());
  }
  if (out.path.size() > 1 && decoded.back() == '/') out.path += '/';
  return out;
}

}  // namespace reactor::http
