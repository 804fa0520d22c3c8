// The "--args" text of a protocol: comma-separated key=value options ("root=/srv,x=1").
// One splitter for every built-in protocol (and an example for plugins).
#pragma once

#include <string_view>

namespace reactor::protocols {

struct Option {
  std::string_view key;
  std::string_view value;  // empty when the option has no '='
};

// Takes the next non-empty option off the front of `args` (spaces around it trimmed); false when
// none is left.
inline bool next_option(std::string_view& args, Option& option) {
  constexpr std::string_view kSpace = " \t";
  while (!args.empty()) {
    const std::size_t comma = args.find(',');
    std::string_view item = args.substr(0, comma);
    args = comma == std::string_view::npos ? std::string_view{} : args.substr(comma + 1);
    const std::size_t first = item.find_first_not_of(kSpace);
    if (first == std::string_view::npos) continue;
    item = item.substr(first, item.find_last_not_of(kSpace) - first + 1);
    const std::size_t equals = item.find('=');
    option.key = item.substr(0, equals);
    option.value = equals == std::string_view::npos ? std::string_view{} : item.substr(equals + 1);
    return true;
  }
  return false;
}

}  // namespace reactor::protocols
