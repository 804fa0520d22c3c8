// The HTTP request parser and HttpSession driven by fuzzed bytes over a small real document root
// (with a symlink and a file outside it). The parser must never consume more than it was given
// and only fail with its own statuses; the session must answer the same stream cut at fuzzed
// points exactly as it answers it in one piece (Date headers aside), never serve the file outside
// the root, and never send after it asked to close.
#include <sys/stat.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "protocols/http/parser.hpp"
#include "protocols/http/session.hpp"

namespace {

constexpr std::string_view kSecret = "TOP-SECRET-OUTSIDE-ROOT";

class Peer final : public reactor::Peer {
 public:
  using reactor::Peer::send;
  void send(std::span<const std::byte> bytes) override {
    if (closed) std::abort();
    out.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  }
  void close() override { closed = true; }
  void shutdown_write() override {}
  std::size_t buffered() const override { return 0; }
  std::string remote() const override { return "tcp://127.0.0.1:1"; }
  std::error_code send_file(int fd, std::uint64_t offset, std::uint64_t length) override {
    if (closed) std::abort();
    std::string chunk(static_cast<std::size_t>(length), '\0');
    const ssize_t n = ::pread(fd, chunk.data(), chunk.size(), static_cast<off_t>(offset));
    if (n != static_cast<ssize_t>(length)) std::abort();  // the session asked past the end
    out += chunk;
    return {};
  }
  reactor::TimerId start_timer(std::chrono::milliseconds, std::chrono::milliseconds) override {
    timers[++last] = true;
    return last;
  }
  bool cancel_timer(reactor::TimerId id) override { return timers.erase(id) > 0; }
  std::string out;
  bool closed = false;
  std::map<reactor::TimerId, bool> timers;
  reactor::TimerId last = 0;
};

const std::string& root() {
  static const std::string dir = [] {
    char pattern[] = "/tmp/fuzz-http-XXXXXX";
    if (::mkdtemp(pattern) == nullptr) std::abort();
    const std::string base = pattern;
    static std::string remove_at_exit = base;
    std::atexit([] {
      std::error_code ec;
      std::filesystem::remove_all(remove_at_exit, ec);
    });
    auto write = [](const std::string& path, std::string_view text) {
      FILE* f = std::fopen(path.c_str(), "w");
      if (f == nullptr) std::abort();
      std::fwrite(text.data(), 1, text.size(), f);
      std::fclose(f);
    };
    write(base + "/secret.txt", kSecret);
    ::mkdir((base + "/root").c_str(), 0755);
    ::mkdir((base + "/root/d").c_str(), 0755);
    write(base + "/root/index.html", "<p>home</p>");
    write(base + "/root/a.txt", "0123456789abcdef");
    write(base + "/root/d/index.html", "<p>d</p>");
    if (::symlink((base + "/secret.txt").c_str(), (base + "/root/out").c_str()) != 0) std::abort();
    if (::symlink("../secret.txt", (base + "/root/out2").c_str()) != 0) std::abort();
    if (::symlink("a.txt", (base + "/root/in").c_str()) != 0) std::abort();
    return base + "/root";
  }();
  return dir;
}

std::string without_dates(std::string text) {
  for (std::size_t at; (at = text.find("\r\nDate: ")) != std::string::npos;) {
    text.erase(at + 2, text.find("\r\n", at + 2) + 2 - (at + 2));
  }
  return text;
}

std::string serve(reactor::Protocol& protocol, std::string_view stream,
                  std::span<const std::uint8_t> cuts) {
  Peer peer;
  struct NoHub final : reactor::Hub {
    void join(std::string_view, reactor::Peer&) override {}
    void leave(std::string_view, reactor::Peer&) override {}
    void publish(std::string_view, std::span<const std::byte>, const reactor::Peer*) override {}
    bool claim_name(std::string_view, reactor::Peer&) override { return false; }
    void release_name(reactor::Peer&) override {}
    bool send_to(std::string_view, std::span<const std::byte>) override { return false; }
    std::vector<reactor::RoomInfo> rooms() override { return {}; }
    std::vector<std::string> members(std::string_view) override { return {}; }
    void forget(reactor::Peer&) override {}
  } hub;
  auto session = protocol.open(hub);
  session->on_open(peer);
  std::string pending;
  std::size_t cut = 0;
  while (!stream.empty() && !peer.closed) {
    std::size_t n = cuts.empty() ? stream.size() : 1 + cuts[cut++ % cuts.size()] % 97;
    if (n > stream.size()) n = stream.size();
    pending.append(stream.substr(0, n));
    stream.remove_prefix(n);
    const std::size_t used = session->on_data(peer, reactor::as_bytes(pending));
    if (used > pending.size()) std::abort();
    pending.erase(0, used);
    if (pending.size() > (64u << 10)) std::abort();  // the parser's limits bound what is kept
  }
  // Paused sessions resume on their poll timer (buffered() is always 0 here).
  for (int round = 0; round < 1000 && !peer.closed && !peer.timers.empty(); ++round) {
    const reactor::TimerId id = peer.timers.rbegin()->first;
    session->on_timer(peer, id);
  }
  session->on_close({});
  return peer.out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::size_t ncuts = data[0] % 16;
  if (size < 1 + ncuts) return 0;
  const std::span<const std::uint8_t> cuts(data + 1, ncuts);
  const std::string_view stream(reinterpret_cast<const char*>(data + 1 + ncuts), size - 1 - ncuts);

  reactor::http::Request request;
  const auto result = reactor::http::parse_request(stream, request);
  if (result.consumed > stream.size()) std::abort();
  if (result.status == reactor::http::ParseStatus::error) {
    const int s = result.error_status;
    if (s != 400 && s != 414 && s != 431 && s != 505) std::abort();
  }

  static std::unique_ptr<reactor::Protocol> protocol = [] {
    std::string error;
    auto p = reactor::http::make_http("root=" + root(), error);
    if (p == nullptr) std::abort();
    return p;
  }();
  const std::string whole = serve(*protocol, stream, {});
  if (whole.find(kSecret) != std::string::npos) std::abort();
  if (without_dates(whole) != without_dates(serve(*protocol, stream, cuts))) std::abort();
  return 0;
}
