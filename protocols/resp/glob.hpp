// Redis's glob for KEYS and CONFIG GET: * ? [abc] [^a-z] and \ escapes, binary-safe.
#pragma once

#include <string_view>

namespace reactor::protocols::resp {

bool glob_match(std::string_view pattern, std::string_view text, bool nocase = false) noexcept;

}  // namespace reactor::protocols::resp
