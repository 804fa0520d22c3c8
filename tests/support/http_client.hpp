// Reading HTTP/1.1 responses in tests: a byte stream split into status, headers and body.
#pragma once

#include <cstddef>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace test {

struct HttpResponse {
  int status = 0;
  std::map<std::string, std::string> headers;  // names lower-cased
  std::string body;
  std::string header(const std::string& name) const {
    const auto it = headers.find(name);
    return it == headers.end() ? std::string() : it->second;
  }
};

// Splits `stream` into responses. Bodies are Content-Length long, except for 304 and for the
// responses whose index is in `no_body` (answers to HEAD). Sets `rest` to what is left over
// (an incomplete response).
inline std::vector<HttpResponse> parse_responses(std::string_view stream,
                                                 const std::vector<std::size_t>& no_body = {},
                                                 std::string* rest = nullptr) {
  std::vector<HttpResponse> out;
  while (!stream.empty()) {
    const std::size_t end = stream.find("\r\n\r\n");
    if (end == std::string_view::npos) break;
    HttpResponse r;
    std::string_view head = stream.substr(0, end + 2);
    const std::size_t line_end = head.find("\r\n");
    const std::string_view status_line = head.substr(0, line_end);
    if (status_line.size() < 12 || !status_line.starts_with("HTTP/1.1 ")) break;
    r.status = std::atoi(std::string(status_line.substr(9, 3)).c_str());
    head.remove_prefix(line_end + 2);
    while (!head.empty()) {
      const std::size_t e = head.find("\r\n");
      const std::string_view field = head.substr(0, e);
      head.remove_prefix(e + 2);
      const std::size_t colon = field.find(':');
      std::string name(field.substr(0, colon));
      for (char& c : name) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
      std::string_view value = field.substr(colon + 1);
      while (!value.empty() && value.front() == ' ') value.remove_prefix(1);
      r.headers[name] = std::string(value);
    }
    std::size_t length = std::strtoull(r.header("content-length").c_str(), nullptr, 10);
    bool skip_body = r.status == 304;
    for (const std::size_t i : no_body) skip_body = skip_body || i == out.size();
    if (skip_body) length = 0;
    if (stream.size() < end + 4 + length) break;
    r.body = std::string(stream.substr(end + 4, length));
    stream.remove_prefix(end + 4 + length);
    out.push_back(std::move(r));
  }
  if (rest != nullptr) *rest = std::string(stream);
  return out;
}

}  // namespace test
