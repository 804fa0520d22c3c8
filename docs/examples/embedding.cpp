// The program docs/embedding.md shows: one Loop that serves a protocol (EpollServer), is a client
// of it (Connector + ConnectionSet) and uses a loop timer. Built with the tests; test_docs checks
// that the page shows this file's code between the markers, and runs it.
// [embedding]
#include <cctype>
#include <cstdio>
#include <functional>
#include <string>

#include "reactor/connection.hpp"
#include "reactor/connector.hpp"
#include "reactor/log.hpp"
#include "reactor/loop.hpp"
#include "reactor/models/epoll.hpp"

// The server's protocol: answers what it reads in upper case.
class ShoutSession final : public reactor::Session {
 public:
  std::size_t on_data(reactor::Peer& peer, std::span<const std::byte> bytes) override {
    std::string out(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    for (char& c : out) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    peer.send(out);
    return bytes.size();  // all consumed
  }
};

class ShoutProtocol final : public reactor::Protocol {
 public:
  std::unique_ptr<reactor::Session> open(reactor::Hub&) override {
    return std::make_unique<ShoutSession>();
  }
};

// The client's session: sends one line, prints the answer once it is whole, closes.
class HelloSession final : public reactor::Session {
 public:
  explicit HelloSession(std::function<void()> done) : done_(std::move(done)) {}
  void on_open(reactor::Peer& peer) override { peer.send("hello, reactor\n"); }
  std::size_t on_data(reactor::Peer& peer, std::span<const std::byte> bytes) override {
    answer_.append(reinterpret_cast<const char*>(bytes.data()), bytes.size());
    if (answer_.ends_with('\n')) {
      std::fputs(answer_.c_str(), stdout);
      peer.close();
    }
    return bytes.size();
  }
  void on_close(std::error_code) override { done_(); }

 private:
  std::string answer_;
  std::function<void()> done_;
};

int main() {
  auto loop = reactor::Loop::create();  // Result<unique_ptr<Loop>>
  if (!loop) return 1;
  ShoutProtocol protocol;
  reactor::EpollServer server(**loop, protocol, reactor::ServerOptions{});
  auto bound = server.listen(*reactor::Address::parse_numeric("tcp://127.0.0.1:0"));
  if (!bound) return 1;  // reactor::describe("listen", bound.error()) says why

  // Stops the server (letting its connections finish within 2 s), then the loop.
  bool stopping = false;
  auto stop = [&] {
    if (std::exchange(stopping, true)) return;
    server.shutdown(std::chrono::seconds(2), [&] { (*loop)->stop(); });
  };

  // A client connection on the same loop: Connector makes the socket, a ConnectionSet drives it.
  reactor::ConnectionSet clients(**loop);
  reactor::ConnectionOptions client_options;
  reactor::Connector connector(**loop, *bound, std::chrono::seconds(5), [&](auto fd) {
    if (!fd) {
      reactor::log(reactor::LogLevel::error, "connect: %s", fd.error().message().c_str());
      return stop();
    }
    clients.open(std::move(*fd), reactor::Transport::tcp, std::make_unique<HelloSession>(stop),
                 client_options);
  });
  connector.start();

  // A loop timer, here a deadline for the whole program (a session would use
  // Peer::start_timer instead, which is cancelled with its connection).
  (*loop)->after(std::chrono::seconds(10), stop);
  if (auto ec = (*loop)->run()) return 1;  // a broken epoll: logged, returned
  return stopping ? 0 : 1;
}
// [/embedding]
