#include "protocols/http/session.hpp"
#include "protocols/options.hpp"

#include <cerrno>
#include <charconv>
#include <ctime>

#include "protocols/http/response.hpp"
#include "protocols/http/target.hpp"

namespace reactor::http {
namespace {

constexpr std::string_view kServerName = "reactor";

// The Date header's value, formatted once per second per thread.
std::string_view date_now() {
  thread_local std::int64_t cached_second = -1;
  thread_local std::string cached;
  const std::int64_t now = static_cast<std::int64_t>(std::time(nullptr));
  if (now != cached_second) {
    cached_second = now;
    cached = format_http_date(now);
  }
  return cached;
}

// Last-Modified for `mtime`: one entry per thread (most requests ask for the same few files).
std::string_view date_of(std::int64_t mtime) {
  thread_local std::int64_t cached_mtime = -1;
  thread_local std::string cached;
  if (mtime != cached_mtime) {
    cached_mtime = mtime;
    cached = format_http_date(mtime);
  }
  return cached;
}

bool parse_seconds(std::string_view value, std::chrono::milliseconds& out) {
  double seconds = 0;
  const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), seconds);
  if (ec != std::errc() || end != value.data() + value.size() || !(seconds > 0) ||
      seconds > 86400) {
    return false;
  }
  out = std::chrono::milliseconds(static_cast<std::int64_t>(seconds * 1000 + 0.5));
  if (out.count() == 0) out = std::chrono::milliseconds(1);
  return true;
}

int status_for_errno(int error) noexcept {
  return error == EACCES || error == EPERM ? 403 : 404;
}

}  // namespace

bool parse_http_config(std::string_view args, HttpConfig& config, std::string& error) {
  bool have_root = false;
  for (reactor::protocols::Option option; reactor::protocols::next_option(args, option);) {
    const std::string_view key = option.key;
    const std::string_view value = option.value;
    if (key == "root") {
      if (value.empty()) {
        error = "http: root=DIR needs a directory";
        return false;
      }
      config.root = value;
      have_root = true;
    } else if (key == "header-timeout" || key == "keepalive-timeout") {
      auto& target = key == "header-timeout" ? config.header_timeout : config.keepalive_timeout;
      if (!parse_seconds(value, target)) {
        error = "http: " + std::string(key) + "=S needs seconds, more than 0 and at most 86400";
        return false;
      }
    } else {
      error = "http: unknown option '" + std::string(key) +
              "' (root=DIR, header-timeout=S, keepalive-timeout=S)";
      return false;
    }
  }
  if (!have_root) {
    error = "http: root=DIR is required (--args root=DIR)";
    return false;
  }
  return true;
}

void HttpSession::on_open(Peer& peer) {
  arm(peer, Deadline::header);
}

std::size_t HttpSession::on_data(Peer& peer, std::span<const std::byte> bytes) {
  const std::string_view text = as_text(bytes);
  if (closing_) return text.size();
  if (backlog_.empty() && !paused_) {
    std::size_t used = process(peer, text);
    if (paused_) {
      backlog_.assign(text.substr(used));
      used = text.size();
    }
    return used;
  }
  backlog_.append(text);
  if (backlog_.size() > kMaxBacklog) {
    close_now(peer);
    return text.size();
  }
  if (!paused_) drain_backlog(peer);
  return text.size();
}

void HttpSession::on_eof(Peer& peer) {
  eof_ = true;
  if (!paused_) close_now(peer);  // an unfinished request is dropped, as nginx does
}

void HttpSession::on_timer(Peer& peer, TimerId id) {
  if (id == resume_) {
    if (peer.buffered() > kLowWater) return;  // still draining; the periodic timer goes on
    peer.cancel_timer(resume_);
    resume_ = kNoTimer;
    paused_ = false;
    drain_backlog(peer);
    if (eof_ && !paused_) close_now(peer);
    return;
  }
  if (id != deadline_) return;
  deadline_ = kNoTimer;
  const Deadline kind = std::exchange(deadline_kind_, Deadline::none);
  if (closing_) return;
  if (kind == Deadline::keepalive && peer.buffered() > 0) {
    arm(peer, Deadline::keepalive);  // still sending the last response: idle starts after it
    return;
  }
  if (kind == Deadline::header && partial_) {
    send_status(peer, 408, false, false);
  }
  close_now(peer);
}

std::size_t HttpSession::process(Peer& peer, std::string_view input) {
  std::size_t offset = 0;
  std::size_t answered = 0;
  while (!closing_ && offset < input.size()) {
    if (answered >= kBurst || peer.buffered() > kHighWater) {
      resume_ = peer.start_timer(kResumePoll, kResumePoll);
      if (resume_ != kNoTimer) {
        paused_ = true;
        disarm(peer);
        return offset;
      }
    }
    Request request;
    const ParseResult result = parse_request(input.substr(offset), request, scanned_);
    if (result.status == ParseStatus::incomplete) {
      scanned_ = input.size() - offset;
      break;
    }
    scanned_ = 0;
    if (result.status == ParseStatus::error) {
      send_status(peer, result.error_status, false, false);
      close_now(peer);
      break;
    }
    offset += result.consumed;
    ++answered;
    answer(peer, request);
  }
  if (closing_) return input.size();
  update_deadline(peer, offset<input.size(), answered> 0);
  return offset;
}

void HttpSession::drain_backlog(Peer& peer) {
  const std::size_t used = process(peer, backlog_);
  if (closing_) {
    backlog_.clear();
  } else {
    backlog_.erase(0, used);
  }
}

void HttpSession::answer(Peer& peer, const Request& request) {
  const bool keep_alive = request.minor_version >= 1
                              ? !request.connection_close
                              : request.connection_keep_alive && !request.connection_close;
  const bool head_only = request.method == "HEAD";
  const bool has_body =
      request.has_transfer_encoding || (request.has_content_length && request.content_length > 0);
  if (!head_only && request.method != "GET") {
    // A body we will not read cannot be skipped safely: close after a request that has one.
    send_status(peer, 405, keep_alive && !has_body, false, "Allow: GET, HEAD\r\n");
    return;
  }
  if (request.has_transfer_encoding) return send_status(peer, 411, false, head_only);
  if (has_body) return send_status(peer, 413, false, head_only);

  const DecodedTarget target = decode_target(request.target);
  if (target.status != 0) {
    return send_status(peer, target.status, keep_alive && target.status != 400, head_only);
  }
  OpenedFile file = files_.open(target.path);
  if (file.error != 0)
    return send_status(peer, status_for_errno(file.error), keep_alive, head_only);
  std::string index_path;
  if (file.directory) {
    if (target.path.back() != '/') {
      std::string location = "Location: ";
      location += target.raw;
      location += "/";
      location += target.query;
      location += "\r\n";
      return send_status(peer, 301, keep_alive, head_only, location);
    }
    index_path = target.path + "index.html";
    file = files_.open(index_path);
    if (file.error == ENOENT) return send_status(peer, 403, keep_alive, head_only);  // no listing
    if (file.error != 0) {
      return send_status(peer, status_for_errno(file.error), keep_alive, head_only);
    }
  }
  if (!file.regular) return send_status(peer, 403, keep_alive, head_only);
  serve(peer, request, file, index_path.empty() ? std::string_view(target.path) : index_path,
        keep_alive);
}

void HttpSession::serve(Peer& peer, const Request& request, OpenedFile& file, std::string_view path,
                        bool keep_alive) {
  const bool head_only = request.method == "HEAD";
  const std::string_view last_modified = date_of(file.mtime);
  if (!request.if_modified_since.empty()) {
    const auto since = parse_http_date(request.if_modified_since);
    if (since && file.mtime <= *since) {
      begin_head(304, keep_alive);
      HeadWriter(head_).header("Last-Modified", last_modified);
      HeadWriter(head_).end();
      peer.send(head_);
      return finish(peer, keep_alive);
    }
  }
  int status = 200;
  ByteRange range{0, file.size == 0 ? 0 : file.size - 1};
  if (!request.range.empty() && (request.if_range.empty() || request.if_range == last_modified)) {
    const RangeKind kind = parse_range(request.range, file.size, range);
    if (kind == RangeKind::unsatisfiable) {
      std::string content_range = "Content-Range: bytes */";
      content_range += std::to_string(file.size);
      content_range += "\r\n";
      return send_status(peer, 416, keep_alive, head_only, content_range);
    }
    if (kind == RangeKind::satisfiable) status = 206;
  }
  const std::uint64_t length = file.size == 0 ? 0 : range.last - range.first + 1;
  begin_head(status, keep_alive);
  HeadWriter head(head_);
  head.header("Content-Type", content_type_for(path));
  head.header("Content-Length", length);
  head.header("Last-Modified", last_modified);
  head.header("Accept-Ranges", "bytes");
  if (status == 206) {
    std::string value = "bytes " + std::to_string(range.first) + "-" + std::to_string(range.last) +
                        "/" + std::to_string(file.size);
    head.header("Content-Range", value);
  }
  head.end();
  peer.send(head_);
  if (!head_only && length > 0) {
    if (peer.send_file(file.file.get(), range.first, length)) {
      // The head is out and the body cannot follow: the client sees a short response and EOF.
      return close_now(peer);
    }
  }
  finish(peer, keep_alive);
}

void HttpSession::send_status(Peer& peer, int status, bool keep_alive, bool head_only,
                              std::string_view extra_headers) {
  std::string body = std::to_string(status);
  body += ' ';
  body += reason_phrase(status);
  body += '\n';
  begin_head(status, keep_alive);
  head_ += extra_headers;
  HeadWriter head(head_);
  head.header("Content-Type", "text/plain; charset=utf-8");
  head.header("Content-Length", body.size());
  head.end();
  if (!head_only) head_ += body;
  peer.send(head_);
  finish(peer, keep_alive);
}

void HttpSession::begin_head(int status, bool keep_alive) {
  head_.clear();
  HeadWriter head(head_);
  head.status_line(status);
  head.header("Server", kServerName);
  head.header("Date", date_now());
  head.header("Connection", keep_alive ? "keep-alive" : "close");
}

void HttpSession::finish(Peer& peer, bool keep_alive) {
  if (!keep_alive) close_now(peer);
}

void HttpSession::close_now(Peer& peer) {
  if (closing_) return;
  closing_ = true;
  disarm(peer);
  if (resume_ != kNoTimer) peer.cancel_timer(resume_);
  resume_ = kNoTimer;
  backlog_.clear();
  peer.close();
}

void HttpSession::update_deadline(Peer& peer, bool partial_input, bool answered) {
  partial_ = partial_input;
  if (partial_input) {
    // The header clock runs from the request's first byte (or the connection's start).
    if (deadline_kind_ != Deadline::header || answered) arm(peer, Deadline::header);
  } else if (answered || deadline_kind_ != Deadline::keepalive) {
    arm(peer, Deadline::keepalive);
  }
}

void HttpSession::arm(Peer& peer, Deadline kind) {
  disarm(peer);
  const auto delay = kind == Deadline::header ? config_.header_timeout : config_.keepalive_timeout;
  deadline_ = peer.start_timer(delay);
  deadline_kind_ = deadline_ == kNoTimer ? Deadline::none : kind;
}

void HttpSession::disarm(Peer& peer) {
  if (deadline_ != kNoTimer) peer.cancel_timer(deadline_);
  deadline_ = kNoTimer;
  deadline_kind_ = Deadline::none;
}

std::unique_ptr<Session> HttpProtocol::open(Hub&) {
  return std::make_unique<HttpSession>(*files_, config_);
}

std::string HttpProtocol::last_words(std::error_code) const {
  return "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
}

std::unique_ptr<Protocol> make_http(std::string_view args, std::string& error) {
  HttpConfig config;
  if (!parse_http_config(args, config, error)) return nullptr;
  auto root = RootDirectory::open_root(config.root, error);
  if (root == nullptr) return nullptr;
  return std::make_unique<HttpProtocol>(std::move(root), std::move(config));
}

}  // namespace reactor::http
