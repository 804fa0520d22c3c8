// Address parsing on arbitrary bytes: never crashes, and whatever parses prints back to a URL
// that parses to the same address. parse_numeric: fuzzing must not send DNS queries.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "reactor/address.hpp"
#include "reactor/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view url(reinterpret_cast<const char*>(data), size);
  auto address = reactor::Address::parse_numeric(url);
  if (!address) {
    if (address.error().message().empty()) std::abort();  // every error explains itself
    return 0;
  }
  if (url.find('\0') != std::string_view::npos) return 0;  // C paths stop at NUL
  auto text = address->to_string();
  auto again = reactor::Address::parse_numeric(text);
  if (!again || !(*again == *address)) std::abort();
  return 0;
}
