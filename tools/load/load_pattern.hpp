// The byte stream a load connection sends: byte i of stream `seed` is the top byte of
// (seed + i) * 2^64/phi. Deterministic, position-dependent and cheap (one add per byte), so the
// echo can be checked byte by byte and a lost, duplicated or reordered chunk shows up at once.
#pragma once

#include <cstddef>
#include <cstdint>

namespace load {

class PatternCursor {
 public:
  PatternCursor(std::uint64_t seed, std::uint64_t offset) noexcept : x_((seed + offset) * kStep) {}
  unsigned char next() noexcept {
    auto b = static_cast<unsigned char>(x_ >> 56);
    x_ += kStep;
    return b;
  }

 private:
  static constexpr std::uint64_t kStep = 0x9E3779B97F4A7C15ull;
  std::uint64_t x_;
};

inline void fill_pattern(std::uint64_t seed, std::uint64_t offset, unsigned char* out,
                         std::size_t n) noexcept {
  PatternCursor c(seed, offset);
  for (std::size_t i = 0; i < n; ++i) out[i] = c.next();
}

// True when `in` is exactly bytes [offset, offset + n) of stream `seed`.
inline bool matches_pattern(std::uint64_t seed, std::uint64_t offset, const unsigned char* in,
                            std::size_t n) noexcept {
  PatternCursor c(seed, offset);
  unsigned char diff = 0;
  for (std::size_t i = 0; i < n; ++i) diff |= static_cast<unsigned char>(in[i] ^ c.next());
  return diff == 0;
}

}  // namespace load
