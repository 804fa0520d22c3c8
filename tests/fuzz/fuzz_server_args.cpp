// reactor-server's argument parser on arbitrary argv (NUL-separated words): never crashes; a
// success always names a protocol and a listener unless it is --help or a --list-*, and
// a failure always says why.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <vector>

#include "server_args.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view all(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> argv;
  while (!all.empty()) {
    auto nul = all.find('\0');
    argv.push_back(all.substr(0, nul));
    if (nul == std::string_view::npos) break;
    all.remove_prefix(nul + 1);
  }
  std::string error;
  auto args = reactor::tools::parse_server_args(argv, error);
  if (!args) {
    if (error.empty()) std::abort();
    return 0;
  }
  if (!args->help && !args->list_protocols && !args->list_models &&
      (args->protocol.empty() || args->listen.empty())) {
    std::abort();
  }
  return 0;
}
