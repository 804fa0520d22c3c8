#include "protocols/resp/protocol.hpp"
#include "protocols/options.hpp"

#include <charconv>
#include <chrono>

#include "protocols/resp/session.hpp"
#include "reactor/error.hpp"

namespace reactor::protocols {
namespace {

// "100", "64kb", "1mb", "2gb" (Redis's memory units, case-insensitive; k/m/g alone also).
bool parse_bytes(std::string_view text, std::size_t& bytes) {
  std::size_t n = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
  if (ec != std::errc{} || end == text.data()) return false;
  std::string unit(end, text.data() + text.size());
  for (auto& c : unit) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  std::size_t scale = 1;
  if (unit == "k" || unit == "kb") {
    scale = 1024;
  } else if (unit == "m" || unit == "mb") {
    scale = 1024 * 1024;
  } else if (unit == "g" || unit == "gb") {
    scale = 1024 * 1024 * 1024;
  } else if (!unit.empty()) {
    return false;
  }
  if (__builtin_mul_overflow(n, scale, &bytes)) return false;
  return true;
}

}  // namespace

bool parse_resp_config(std::string_view args, resp::RespConfig& config, std::string& error) {
  for (reactor::protocols::Option option; reactor::protocols::next_option(args, option);) {
    const std::string_view key = option.key;
    const std::string_view value = option.value;
    if (key != "maxmemory" && key != "proto-max-bulk-len" && key != "max-multibulk-len") {
      error = "unknown option '" + std::string(key) +
              "' (known: maxmemory=BYTES, proto-max-bulk-len=BYTES, max-multibulk-len=N)";
      return false;
    }
    std::size_t n = 0;
    if (!parse_bytes(value, n)) {
      error = std::string(key) + "=" + std::string(value) + ": expected a number";
      return false;
    }
    if (key == "maxmemory") {
      config.maxmemory = n;
    } else if (key == "proto-max-bulk-len") {
      if (n < 1024 || n > (std::size_t{1} << 32)) {
        error = "proto-max-bulk-len needs 1kb to 4gb";
        return false;
      }
      config.limits.max_bulk = n;
    } else {  // max-multibulk-len
      if (n < 1 || n > (std::size_t{1} << 31)) {
        error = "max-multibulk-len needs 1 to 2147483648";
        return false;
      }
      config.limits.max_multibulk = n;
    }
  }
  return true;
}

std::unique_ptr<Session> RespProtocol::open(Hub& hub) {
  return std::make_unique<resp::RespSession>(state_, hub);
}

std::size_t RespProtocol::max_input() const {
  return state_.config.limits.max_bulk + 2 * state_.config.limits.max_inline + (1u << 20);
}

std::string RespProtocol::last_words(std::error_code reason) const {
  if (reason == Errc::too_many_connections) return "-ERR max number of clients reached\r\n";
  return {};
}

std::unique_ptr<Protocol> make_resp(std::string_view args, std::string& error) {
  resp::RespConfig config;
  if (!parse_resp_config(args, config, error)) return nullptr;
  return std::make_unique<RespProtocol>(std::move(config));
}

namespace resp {
std::int64_t system_clock_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}
}  // namespace resp

}  // namespace reactor::protocols
