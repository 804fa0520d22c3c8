#include "reactor/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <mutex>

namespace reactor {
namespace {

void stderr_sink(LogLevel level, std::string_view message, void*) {
  char line[1200];
  const std::string_view name = log_level_name(level);
  int n = std::snprintf(line, sizeof(line), "reactor: %.*s: %.*s\n", static_cast<int>(name.size()),
                        name.data(), static_cast<int>(message.size()), message.data());
  if (n <= 0) return;
  if (static_cast<std::size_t>(n) >= sizeof(line)) n = sizeof(line) - 1;
  [[maybe_unused]] ssize_t w = ::write(STDERR_FILENO, line, static_cast<std::size_t>(n));
}

std::atomic<int> current_level{static_cast<int>(LogLevel::warn)};
std::mutex sink_mutex;
LogSink sink = &stderr_sink;  // guarded by sink_mutex
void* sink_context = nullptr;

}  // namespace

void set_log_sink(LogSink new_sink, void* context) noexcept {
  std::lock_guard lock(sink_mutex);
  sink = new_sink != nullptr ? new_sink : &stderr_sink;
  sink_context = new_sink != nullptr ? context : nullptr;
}

void set_log_level(LogLevel level) noexcept {
  current_level.store(static_cast<int>(level), std::memory_order_relaxed);
}

LogLevel log_level() noexcept {
  return static_cast<LogLevel>(current_level.load(std::memory_order_relaxed));
}

std::string_view log_level_name(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::error:
      return "error";
    case LogLevel::warn:
      return "warn";
    case LogLevel::info:
      return "info";
    case LogLevel::debug:
      return "debug";
  }
  return "?";
}

bool parse_log_level(std::string_view name, LogLevel& level) noexcept {
  for (LogLevel l : {LogLevel::error, LogLevel::warn, LogLevel::info, LogLevel::debug}) {
    if (name == log_level_name(l)) {
      level = l;
      return true;
    }
  }
  return false;
}

void log(LogLevel level, const char* format, ...) noexcept {
  if (!log_enabled(level)) return;
  char message[1024];
  va_list args;
  va_start(args, format);
  int n = std::vsnprintf(message, sizeof(message), format, args);
  va_end(args);
  if (n < 0) return;
  const std::size_t length =
      static_cast<std::size_t>(n) < sizeof(message) ? static_cast<std::size_t>(n) : sizeof(message) - 1;
  std::lock_guard lock(sink_mutex);
  try {
    sink(level, std::string_view(message, length), sink_context);
  } catch (...) {  // a throwing sink loses its line, not the caller
  }
}

}  // namespace reactor
