// RESP2 reply encoding: appends to a session's output string, which is sent once per batch.
#pragma once

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>

namespace reactor::protocols::resp {

inline void append_int_digits(std::string& out, std::int64_t value) {
  char digits[24];
  const auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
  out.append(digits, static_cast<std::size_t>(end - digits));
}

inline void reply_simple(std::string& out, std::string_view text) {
  out += '+';
  out += text;
  out += "\r\n";
}
inline void reply_ok(std::string& out) {
  out += "+OK\r\n";
}

// `text` is the whole message after '-' ("ERR syntax error"); newlines become spaces, as in Redis.
inline void reply_error(std::string& out, std::string_view text) {
  out += '-';
  const std::size_t start = out.size();
  out += text;
  for (std::size_t i = start; i < out.size(); ++i) {
    if (out[i] == '\r' || out[i] == '\n') out[i] = ' ';
  }
  out += "\r\n";
}

inline void reply_int(std::string& out, std::int64_t value) {
  out += ':';
  append_int_digits(out, value);
  out += "\r\n";
}

inline void reply_bulk(std::string& out, std::string_view value) {
  out += '$';
  append_int_digits(out, static_cast<std::int64_t>(value.size()));
  out += "\r\n";
  out += value;
  out += "\r\n";
}
inline void reply_nil(std::string& out) {
  out += "$-1\r\n";
}

inline void reply_array(std::string& out, std::size_t count) {
  out += '*';
  append_int_digits(out, static_cast<std::int64_t>(count));
  out += "\r\n";
}

}  // namespace reactor::protocols::resp
