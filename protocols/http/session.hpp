// HTTP/1.1 static file server, written against the public plugin API only (session.hpp): GET and
// HEAD of files beneath one root, keep-alive and pipelining, conditional and range requests.
// docs/http.md lists the status codes, limits and how it differs from nginx.
//
// Configuration (registry args, comma-separated): root=DIR (required; resolved once, at start),
// header-timeout=S (default 10: a request head not finished within S seconds of its first byte,
// or of the connection's start, gets 408 and the connection closes), keepalive-timeout=S
// (default 5: an idle keep-alive connection closes after S seconds). S may have decimals.
//
// Pipelining and backpressure: every complete request in the input is answered in order, in one
// on_data call, up to kBurst requests or until the peer holds more than kHighWater unsent bytes.
// Then the session keeps the rest of the input itself (at most kMaxBacklog bytes; more closes the
// connection) and polls Peer::buffered() on a session timer every kResumePoll until the output
// has drained below kLowWater, then goes on. So a client pipelining thousands of requests costs
// a bounded number of queued files (each send_file holds a descriptor) and never hangs waiting
// for bytes it already sent.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "protocols/http/files.hpp"
#include "protocols/http/parser.hpp"
#include "reactor/session.hpp"

namespace reactor::http {

struct HttpConfig {
  std::string root;
  std::chrono::milliseconds header_timeout{10'000};
  std::chrono::milliseconds keepalive_timeout{5'000};
};

// Parses registry args; false with a one-line reason in `error` if bad.
bool parse_http_config(std::string_view args, HttpConfig& config, std::string& error);

class HttpSession final : public Session {
 public:
  static constexpr std::size_t kBurst = 64;
  static constexpr std::size_t kHighWater = 1u << 20;
  static constexpr std::size_t kLowWater = 256u << 10;
  static constexpr std::size_t kMaxBacklog = 1u << 20;
  static constexpr std::chrono::milliseconds kResumePoll{2};

  HttpSession(const FileSource& files, const HttpConfig& config) : files_(files), config_(config) {}

  void on_open(Peer& peer) override;
  std::size_t on_data(Peer& peer, std::span<const std::byte> bytes) override;
  void on_eof(Peer& peer) override;
  void on_timer(Peer& peer, TimerId id) override;

 private:
  enum class Deadline { none, header, keepalive };

  // Answers the complete requests at the front of `input`; returns the bytes they took (all of
  // `input` once the connection is closing).
  std::size_t process(Peer& peer, std::string_view input);
  void drain_backlog(Peer& peer);
  void answer(Peer& peer, const Request& request);
  void serve(Peer& peer, const Request& request, OpenedFile& file, std::string_view path,
             bool keep_alive);
  void send_status(Peer& peer, int status, bool keep_alive, bool head_only,
                   std::string_view extra_headers = {});
  void begin_head(int status, bool keep_alive);
  void finish(Peer& peer, bool keep_alive);
  void close_now(Peer& peer);
  // Arms the header or keep-alive deadline that fits the input held now.
  void update_deadline(Peer& peer, bool partial_input, bool answered);
  void arm(Peer& peer, Deadline kind);
  void disarm(Peer& peer);

  const FileSource& files_;
  const HttpConfig& config_;
  std::string backlog_;      // input held by the session while paused (and until it is used)
  std::string head_;         // the response head being built, reused
  std::size_t scanned_ = 0;  // bytes of the partial request already searched for its end
  TimerId deadline_ = kNoTimer;
  Deadline deadline_kind_ = Deadline::none;
  TimerId resume_ = kNoTimer;
  bool paused_ = false;
  bool closing_ = false;
  bool eof_ = false;
  bool partial_ = false;  // bytes of an unfinished request are waiting
};

class HttpProtocol final : public Protocol {
 public:
  HttpProtocol(std::unique_ptr<const FileSource> files, HttpConfig config)
      : files_(std::move(files)), config_(std::move(config)) {}
  std::unique_ptr<Session> open(Hub& hub) override;
  // "HTTP/1.1 503 Service Unavailable" with Content-Length 0 and Connection: close.
  std::string last_words(std::error_code reason) const override;

 private:
  std::unique_ptr<const FileSource> files_;
  HttpConfig config_;
};

inline constexpr ProtocolInfo kHttpInfo{"http",
                                        "HTTP/1.1 static files: GET/HEAD, keep-alive, ranges "
                                        "(root=DIR)",
                                        kTcp | kUnixStream, false};

// Registry factory: args as parse_http_config reads them; the root must be a directory.
std::unique_ptr<Protocol> make_http(std::string_view args, std::string& error);

}  // namespace reactor::http
