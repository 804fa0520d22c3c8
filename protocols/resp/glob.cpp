#include "protocols/resp/glob.hpp"

#include <cctype>

namespace reactor::protocols::resp {
namespace {

char fold(char c, bool nocase) noexcept {
  return nocase ? static_cast<char>(std::tolower(static_cast<unsigned char>(c))) : c;
}

// One character class starting after '['; advances `p` past its ']' (or to the end).
bool match_class(std::string_view pattern, std::size_t& p, char c, bool nocase) noexcept {
  bool negate = false;
  if (p < pattern.size() && pattern[p] == '^') {
    negate = true;
    ++p;
  }
  bool matched = false;
  while (p < pattern.size() && pattern[p] != ']') {
    if (pattern[p] == '\\' && p + 1 < pattern.size()) {
      ++p;
      if (fold(pattern[p], nocase) == fold(c, nocase)) matched = true;
      ++p;
    } else if (p + 2 < pattern.size() && pattern[p + 1] == '-' && pattern[p + 2] != ']') {
      char lo = fold(pattern[p], nocase), hi = fold(pattern[p + 2], nocase);
      if (lo > hi) std::swap(lo, hi);
      const char x = fold(c, nocase);
      if (x >= lo && x <= hi) matched = true;
      p += 3;
    } else {
      if (fold(pattern[p], nocase) == fold(c, nocase)) matched = true;
      ++p;
    }
  }
  if (p < pattern.size()) ++p;  // the ']'
  return negate ? !matched : matched;
}

}  // namespace

bool glob_match(std::string_view pattern, std::string_view text, bool nocase) noexcept {
  // Iterative with one backtrack point for the last '*': linear-ish, never exponential.
  std::size_t p = 0, t = 0;
  std::size_t star_p = std::string_view::npos, star_t = 0;
  while (t < text.size()) {
    if (p < pattern.size()) {
      const char pc = pattern[p];
      if (pc == '*') {
        while (p < pattern.size() && pattern[p] == '*') ++p;
        if (p == pattern.size()) return true;
        star_p = p;
        star_t = t;
        continue;
      }
      if (pc == '?') {
        ++p;
        ++t;
        continue;
      }
      if (pc == '[') {
        std::size_t q = p + 1;
        if (match_class(pattern, q, text[t], nocase)) {
          p = q;
          ++t;
          continue;
        }
      } else {
        std::size_t q = p;
        if (pc == '\\' && q + 1 < pattern.size()) ++q;
        if (fold(pattern[q], nocase) == fold(text[t], nocase)) {
          p = q + 1;
          ++t;
          continue;
        }
      }
    }
    if (star_p == std::string_view::npos) return false;
    p = star_p;
    t = ++star_t;
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace reactor::protocols::resp
