// The "summary: key=N key=N ..." line reactor-server (and textbook-echo) print on exit, as a
// map; empty if there is none. Shared by every harness that runs the server as a process.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <map>
#include <string>
#include <string_view>

namespace test {

inline std::map<std::string, std::uint64_t> parse_summary(std::string_view output) {
  std::map<std::string, std::uint64_t> values;
  const std::size_t at = output.rfind("summary: ");
  if (at == std::string_view::npos) return values;
  std::string_view rest = output.substr(at + 9);
  rest = rest.substr(0, std::min(rest.find('\n'), rest.size()));
  while (!rest.empty()) {
    const std::size_t space = std::min(rest.find(' '), rest.size());
    const std::string_view field = rest.substr(0, space);
    rest.remove_prefix(std::min(space + 1, rest.size()));
    const std::size_t eq = field.find('=');
    if (eq == std::string_view::npos) continue;
    values[std::string(field.substr(0, eq))] =
        std::strtoull(std::string(field.substr(eq + 1)).c_str(), nullptr, 10);
  }
  return values;
}

}  // namespace test
