// Logging: the library's only way to say something. Levels, stderr by default, a replaceable sink.
// The library never writes to stderr itself; tools pick the level (reactor-server --log-level).
// Thread-safe: the sink is called under one mutex, so lines never interleave.
#pragma once

#include <string_view>

namespace reactor {

enum class LogLevel : int { error = 0, warn = 1, info = 2, debug = 3 };

// Receives one message (no trailing newline). `context` is what set_log_sink was given.
using LogSink = void (*)(LogLevel level, std::string_view message, void* context);

// nullptr restores the default sink: "reactor: LEVEL: message\n" on stderr, one write per line.
void set_log_sink(LogSink sink, void* context = nullptr) noexcept;
// Messages above `level` are dropped before formatting. Default: warn.
void set_log_level(LogLevel level) noexcept;
LogLevel log_level() noexcept;
inline bool log_enabled(LogLevel level) noexcept {
  return static_cast<int>(level) <= static_cast<int>(log_level());
}
// "error", "warn", "info", "debug"; parse_log_level returns false for anything else.
std::string_view log_level_name(LogLevel level) noexcept;
bool parse_log_level(std::string_view name, LogLevel& level) noexcept;

// printf-style; messages longer than 1 KiB are cut.
void log(LogLevel level, const char* format, ...) noexcept __attribute__((format(printf, 2, 3)));

}  // namespace reactor
