#include <sys/socket.h>

#include <string>

#include "reactor/error.hpp"
#include "reactor/log.hpp"
#include "reactor/models/model.hpp"
#include "reactor/socket.hpp"

namespace reactor {

void refuse_connection(int fd, Transport transport, const Protocol& protocol) noexcept {
  try {
    if (log_enabled(LogLevel::info)) {
      auto peer = peer_address(fd, transport);
      log(LogLevel::info, "%s: refused: too many connections",
          peer ? peer->to_string().c_str() : "(unknown peer)");
    }
    const std::string words = protocol.last_words(Errc::too_many_connections);
    if (!words.empty()) {
      [[maybe_unused]] ssize_t n =
          ::send(fd, words.data(), words.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
    }
  } catch (...) {  // a throwing last_words loses its words, not the server
  }
}

}  // namespace reactor
