// LineSplitter (the framing helper plugins use): the same stream cut at fuzzed points must give
// the same lines as the stream read in one piece, and never hold more than max_line + 1 bytes.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <string>
#include <vector>

#include "protocols/line_splitter.hpp"

namespace {

using reactor::protocols::LineSplitter;

std::vector<std::string> split(std::span<const std::byte> stream,
                               std::span<const std::uint8_t> cuts, std::size_t max_line) {
  LineSplitter splitter(max_line);
  std::vector<std::string> out;
  std::size_t cut = 0;
  while (!stream.empty()) {
    std::size_t n = cuts.empty() ? stream.size() : 1 + cuts[cut++ % cuts.size()] % 17;
    if (n > stream.size()) n = stream.size();
    auto chunk = stream.first(n);
    stream = stream.subspan(n);
    while (auto event = splitter.next(chunk)) {
      if (event->kind == LineSplitter::Event::Kind::line) {
        out.emplace_back(event->text);
      } else {
        out.emplace_back("<too long>");
      }
    }
    if (splitter.held() > max_line + 1) std::abort();
  }
  if (auto last = splitter.finish()) out.emplace_back(std::string(*last) + "<eof>");
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 2) return 0;
  std::size_t max_line = 1 + data[0] % 64;
  std::size_t ncuts = data[1] % 16;
  if (size < 2 + ncuts) return 0;
  std::span<const std::uint8_t> cuts(data + 2, ncuts);
  std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data + 2 + ncuts),
                                    size - 2 - ncuts);
  if (split(stream, {}, max_line) != split(stream, cuts, max_line)) std::abort();
  return 0;
}
