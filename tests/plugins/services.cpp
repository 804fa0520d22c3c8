// A test plugin that exercises what the core offers sessions: timers, send_file, coalesced
// output, last words, and a throwing handler. One command per line:
//   BURST N              N replies "line I", one Peer::send each
//   AFTER MS TAG         one-shot timer -> "fired TAG"
//   EVERY MS N TAG       periodic timer -> "tick TAG K" N times, then cancels it -> "done TAG"
//   CANCEL MS TAG        arms and cancels at once -> "cancelled TAG 1" (it must never fire)
//   CLOSE_TIMER MS       arms a timer, then closes: the timer must never fire after on_close
//   FILE PATH OFF LEN    "begin\n", the file's bytes, "\nend\n"
//   THROW                throws std::runtime_error("kaboom")
#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <sstream>
#include <stdexcept>
#include <string>

#include "reactor/plugin.hpp"

namespace {

class ServicesSession final : public reactor::Session {
 public:
  std::size_t on_data(reactor::Peer& peer, std::span<const std::byte> bytes) override {
    const std::string_view text = reactor::as_text(bytes);
    std::size_t done = 0;
    for (std::size_t end; (end = text.find('\n', done)) != text.npos; done = end + 1) {
      handle(peer, std::string(text.substr(done, end - done)));
    }
    return done;
  }

  void on_timer(reactor::Peer& peer, reactor::TimerId id) override {
    if (closed_) std::abort();  // never after on_close
    auto it = timers_.find(id);
    if (it == timers_.end()) {
      peer.send("unknown timer\n");
      return;
    }
    Timer& t = it->second;
    if (t.ticks_left == 0) {
      peer.send("fired " + t.tag + "\n");
      timers_.erase(it);
      return;
    }
    peer.send("tick " + t.tag + " " + std::to_string(++t.ticks) + "\n");
    if (--t.ticks_left == 0) {
      const bool cancelled = peer.cancel_timer(id);
      peer.send("done " + t.tag + (cancelled ? "" : " (cancel failed)") + "\n");
      timers_.erase(it);
    }
  }

  void on_close(std::error_code) override { closed_ = true; }

 private:
  struct Timer {
    std::string tag;
    unsigned ticks_left = 0;  // 0: one-shot
    unsigned ticks = 0;
  };

  void handle(reactor::Peer& peer, const std::string& line) {
    std::istringstream in(line);
    std::string command;
    in >> command;
    if (command == "BURST") {
      unsigned n = 0;
      in >> n;
      for (unsigned i = 0; i < n; ++i) peer.send("line " + std::to_string(i) + "\n");
    } else if (command == "AFTER" || command == "EVERY" || command == "CANCEL") {
      long ms = 0;
      unsigned n = 0;
      std::string tag;
      in >> ms;
      if (command == "EVERY") in >> n;
      in >> tag;
      const auto delay = std::chrono::milliseconds(ms);
      const reactor::TimerId id = peer.start_timer(delay, command == "EVERY" ? delay : std::chrono::milliseconds(0));
      if (id == reactor::kNoTimer) {
        peer.send("no timer\n");
        return;
      }
      if (command == "CANCEL") {
        peer.send("cancelled " + tag + (peer.cancel_timer(id) ? " 1" : " 0") + "\n");
        return;
      }
      timers_[id] = Timer{tag, n, 0};
    } else if (command == "CLOSE_TIMER") {
      long ms = 0;
      in >> ms;
      peer.start_timer(std::chrono::milliseconds(ms));
      peer.send("closing\n");
      peer.close();
    } else if (command == "FILE") {
      std::string path;
      std::uint64_t offset = 0, length = 0;
      in >> path >> offset >> length;
      const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        peer.send("error open\n");
        return;
      }
      peer.send("begin\n");
      const std::error_code ec = peer.send_file(fd, offset, length);
      ::close(fd);  // the peer keeps its own descriptor
      peer.send(ec ? "\nerror " + ec.message() + "\n" : std::string("\nend\n"));
    } else if (command == "THROW") {
      throw std::runtime_error("kaboom");
    } else {
      peer.send("unknown command\n");
    }
  }

  std::map<reactor::TimerId, Timer> timers_;
  bool closed_ = false;
};

struct ServicesProtocol final : reactor::Protocol {
  std::unique_ptr<reactor::Session> open(reactor::Hub&) override {
    return std::make_unique<ServicesSession>();
  }
  std::string last_words(std::error_code reason) const override {
    return "BYE " + reason.message() + "\n";
  }
};

}  // namespace

REACTOR_PLUGIN(ServicesProtocol, "services", "timers, send_file, bursts, last words (tests)",
               reactor::kTcp | reactor::kUnixStream, false)
