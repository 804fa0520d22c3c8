// Chat over real sockets against reactor-server, once per model (test::kServerModels), each model
// in its own server process. Replies are compared exactly (formats in protocols/chat.hpp). A line
// that must NOT reach a client is checked by asking that client something: its reply has to be
// the next line it reads.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <charconv>
#include <condition_variable>
#include <filesystem>
#include <fstream>
#include <future>
#include <mutex>
#include <sstream>
#include <thread>

#include "support/chat_client.hpp"
#include "support/process.hpp"
#include "support/support.hpp"

using namespace std::chrono_literals;

namespace {

const std::string kServer = REACTOR_SERVER_PATH;
const std::string kGreeting =
    "* welcome to reactor chat; choose a nick with /nick NAME (/help lists commands)";
const std::string kNeedNick = "ERR set a nick first: /nick NAME";
const std::string kInvalidNick = "ERR invalid nick: use 1 to 32 of A-Z a-z 0-9 _ -";

// A chat client that has read the greeting.
class ChatClient final : public test::ChatClient {
 public:
  explicit ChatClient(const reactor::Address& address, int receive_buffer = 0)
      : test::ChatClient(address, receive_buffer) {
    CHECK(line() == kGreeting);
  }
};

// For failure messages: the lines, one per line.
std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += "\n  " + line;
  return out;
}

// Connects and takes `nick` (first nick: joins the lobby).
std::unique_ptr<ChatClient> join_as(const reactor::Address& address, const std::string& nick,
                                    int receive_buffer = 0) {
  auto client = std::make_unique<ChatClient>(address, receive_buffer);
  CHECK(client->ask("/nick " + nick) == "OK nick " + nick + ", joined lobby");
  return client;
}

// Runs `body(model, server)` once per model in its own SUBCASE, against a chat server listening
// on TCP (addresses[0]) and a UNIX socket (addresses[1]); stops it and checks a clean exit.
template <class Body>
void for_each_model(Body body) {
  static int counter = 0;
  for (const std::string_view name : test::kServerModels) {
    const std::string model(name);
    SUBCASE(model.c_str()) {
      if (!test::model_serves_hub(model)) return;
      std::vector<std::string> args = {"--protocol", "chat", "--model", model};
      const auto workers = test::workers_args(model, 3);  // the hub across loops or threads
      args.insert(args.end(), workers.begin(), workers.end());
      const std::string path = test::temp_socket_path("chat-" + std::to_string(++counter));
      args.insert(args.end(), {"--listen", "tcp://127.0.0.1:0", "--listen", "unix:" + path,
                               "--shutdown-grace", "3"});
      auto server = test::start_server(kServer, args);
      if (!server) return;
      REQUIRE(server->addresses.size() == 2);
      body(model, *server);
      test::stop_server(*server);
    }
  }
}

// "alice: seq 000123 ...": the number, or -1 if the line is not one of `from`'s numbered lines.
long sequence_of(std::string_view line, std::string_view from) {
  const std::string prefix = std::string(from) + ": seq ";
  if (!line.starts_with(prefix)) return -1;
  line.remove_prefix(prefix.size());
  long n = -1;
  const auto [end, ec] = std::from_chars(line.data(), line.data() + line.size(), n);
  return ec == std::errc{} ? n : -1;
}

std::string numbered_line(long seq, std::size_t length) {
  char head[32];
  const int n = std::snprintf(head, sizeof head, "seq %08ld ", seq);
  std::string line(head, static_cast<std::size_t>(n));
  line.resize(length - 1, 'x');
  return line + "\n";
}

}  // namespace

TEST_CASE("chat nick rules: valid names, bad characters, 33 characters, taken names, no nick") {
  for_each_model([](const std::string&, test::ServerProcess& server) {
    const auto& address = server.addresses[0];
    ChatClient a(address);
    CHECK(a.ask("hello before a nick") == kNeedNick);
    CHECK(a.ask("/join dev") == kNeedNick);
    CHECK(a.ask("/who") == kNeedNick);
    CHECK(a.ask("/msg bob hi") == kNeedNick);
    CHECK(a.ask("/nick") == "ERR usage: /nick NAME");
    CHECK(a.ask("/nick bad*name") == kInvalidNick);
    CHECK(a.ask("/nick bad.name") == kInvalidNick);
    CHECK(a.ask("/nick two words") == kInvalidNick);
    CHECK(a.ask("/nick caf\xc3\xa9") == kInvalidNick);
    CHECK(a.ask("/nick [x]") == kInvalidNick);
    CHECK(a.ask("/nick " + std::string(33, 'n')) == kInvalidNick);
    const std::string longest = "Az09_-" + std::string(26, 'q');  // 32: the longest allowed
    REQUIRE(longest.size() == 32);
    CHECK(a.ask("/NICK " + longest) == "OK nick " + longest + ", joined lobby");
    CHECK(a.ask("/nick " + longest) == "OK nick " + longest);  // your own nick again

    ChatClient b(server.addresses[1]);  // over the UNIX socket
    CHECK(b.ask("/nick " + longest) == "ERR nick taken: " + longest);
    CHECK(b.ask("/nick bob") == "OK nick bob, joined lobby");
    CHECK(a.line() == "* bob joined");
    CHECK(b.ask("/nick bob") == "OK nick bob");

    // Renaming frees the old nick; the room hears of it.
    CHECK(a.ask("/nick alice") == "OK nick alice");
    CHECK(b.line() == "* " + longest + " is now alice");
    CHECK(b.ask("/nick alice") == "ERR nick taken: alice");
    ChatClient c(address);
    CHECK(c.ask("/nick " + longest) == "OK nick " + longest + ", joined lobby");
    CHECK(a.line() == "* " + longest + " joined");
    CHECK(b.line() == "* " + longest + " joined");

    // Leaving frees the nick too.
    CHECK(b.ask("/quit") == "OK bye");
    CHECK_FALSE(b.read_line().has_value());
    CHECK(b.last_error() == "eof");
    CHECK(a.line() == "* bob left");
    CHECK(c.line() == "* bob left");
    ChatClient d(address);
    CHECK(d.ask("/nick bob") == "OK nick bob, joined lobby");
    CHECK(a.line() == "* bob joined");
    // /who shows each nick as its holder spelled it, sorted ignoring case.
    CHECK(a.ask("/who") == "OK 3 in lobby: alice " + longest + " bob");
  });
}

TEST_CASE("chat join and leave notices reach the right rooms only; /rooms and /who are exact") {
  for_each_model([](const std::string&, test::ServerProcess& server) {
    const auto& tcp = server.addresses[0];
    auto alice = join_as(tcp, "alice");
    auto bob = join_as(server.addresses[1], "bob");
    CHECK(alice->line() == "* bob joined");
    auto carol = join_as(tcp, "carol");
    CHECK(alice->line() == "* carol joined");
    CHECK(bob->line() == "* carol joined");

    CHECK(carol->ask("/join dev") == "OK joined dev");
    CHECK(alice->line() == "* carol left");
    CHECK(bob->line() == "* carol left");

    auto dave = join_as(tcp, "dave");
    CHECK(alice->line() == "* dave joined");
    CHECK(bob->line() == "* dave joined");
    CHECK(carol->ask("/who") == "OK 1 in dev: carol");  // no lobby notice reached dev

    CHECK(alice->ask("/rooms") == "OK 2 rooms: dev(1) lobby(3)");
    CHECK(bob->ask("/who") == "OK 3 in lobby: alice bob dave");
    CHECK(carol->ask("/ROOMS") == "OK 2 rooms: dev(1) lobby(3)");  // commands ignore case

    carol->send_line("only dev hears this");
    CHECK(carol->ask("/who") == "OK 1 in dev: carol");  // her line is handled before bob joins
    CHECK(bob->ask("/join dev") == "OK joined dev");
    CHECK(carol->line() == "* bob joined");
    CHECK(alice->line() == "* bob left");  // and not carol's line before it
    CHECK(dave->line() == "* bob left");
    bob->send_line("hi carol");
    CHECK(carol->line() == "bob: hi carol");
    CHECK(alice->ask("/who") == "OK 2 in lobby: alice dave");

    CHECK(carol->ask("/join dev") == "OK joined dev");  // already there: no notices
    CHECK(bob->ask("/who") == "OK 2 in dev: bob carol");
    CHECK(carol->ask("/join") == "ERR usage: /join ROOM");
    CHECK(carol->ask("/join no room!") == "ERR invalid room: use 1 to 32 of A-Z a-z 0-9 _ -");

    CHECK(dave->ask("/quit") == "OK bye");
    CHECK(alice->line() == "* dave left");
    CHECK(bob->ask("/rooms") == "OK 2 rooms: dev(2) lobby(1)");
    CHECK(carol->ask("/who") == "OK 2 in dev: bob carol");
  });
}

TEST_CASE("chat names and rooms ignore case and show as their owner spelled them") {
  for_each_model([](const std::string&, test::ServerProcess& server) {
    const auto& tcp = server.addresses[0];
    auto alice = join_as(tcp, "Alice");
    auto bob = join_as(server.addresses[1], "bob");
    CHECK(alice->line() == "* bob joined");
    ChatClient other(tcp);
    CHECK(other.ask("/nick alice") == "ERR nick taken: alice");  // Alice vs alice: one nick
    CHECK(bob->ask("/who") == "OK 2 in lobby: Alice bob");
    CHECK(bob->ask("/msg ALICE hi") == "OK sent to ALICE");
    CHECK(alice->line() == "[private] bob: hi");
    CHECK(alice->ask("/msg BOB hello") == "OK sent to BOB");
    CHECK(bob->line() == "[private] Alice: hello");

    // The room keeps its creator's spelling while it exists.
    CHECK(alice->ask("/join Dev") == "OK joined Dev");
    CHECK(bob->line() == "* Alice left");
    CHECK(bob->ask("/join DEV") == "OK joined Dev");
    CHECK(alice->line() == "* bob joined");
    CHECK(alice->ask("/who") == "OK 2 in Dev: Alice bob");
    CHECK(other.ask("/rooms") == "OK 1 room: Dev(2)");

    // Lobby vs lobby: the lobby created again as "Lobby" is "Lobby" to newcomers.
    CHECK(alice->ask("/join Lobby") == "OK joined Lobby");
    CHECK(bob->line() == "* Alice left");
    CHECK(other.ask("/nick carol") == "OK nick carol, joined Lobby");
    CHECK(alice->line() == "* carol joined");
    CHECK(other.ask("/rooms") == "OK 2 rooms: Dev(1) Lobby(2)");
    CHECK(alice->ask("/nick ALICE") == "OK nick ALICE");
    CHECK(other.line() == "* Alice is now ALICE");
    CHECK(other.ask("/who") == "OK 2 in Lobby: ALICE carol");
  });
}

TEST_CASE("chat private messages reach only their target") {
  for_each_model([](const std::string&, test::ServerProcess& server) {
    const auto& tcp = server.addresses[0];
    auto alice = join_as(tcp, "alice");
    auto bob = join_as(tcp, "bob");
    CHECK(alice->line() == "* bob joined");
    auto carol = join_as(server.addresses[1], "carol");
    CHECK(alice->line() == "* carol joined");
    CHECK(bob->line() == "* carol joined");

    CHECK(alice->ask("/msg bob psst: just you") == "OK sent to bob");
    CHECK(bob->line() == "[private] alice: psst: just you");
    CHECK(carol->ask("/who") == "OK 3 in lobby: alice bob carol");
    CHECK(alice->ask("/who") == "OK 3 in lobby: alice bob carol");  // the sender gets no copy

    CHECK(alice->ask("/msg nobody hi") == "ERR no such nick");
    CHECK(alice->ask("/msg bob") == "ERR usage: /msg NICK TEXT");
    CHECK(alice->ask("/msg b*b hi") == "ERR no such nick");

    CHECK(carol->ask("/join dev") == "OK joined dev");  // across rooms
    CHECK(alice->line() == "* carol left");
    CHECK(bob->line() == "* carol left");
    CHECK(bob->ask("/msg carol across rooms") == "OK sent to carol");
    CHECK(carol->line() == "[private] bob: across rooms");
    CHECK(alice->ask("/who") == "OK 2 in lobby: alice bob");
  });
}

TEST_CASE("chat answers unknown commands and over-long lines with ERR and stays usable") {
  for_each_model([](const std::string&, test::ServerProcess& server) {
    auto alice = join_as(server.addresses[0], "alice");
    auto bob = join_as(server.addresses[0], "bob");
    CHECK(alice->line() == "* bob joined");

    CHECK(alice->ask("/frobnicate now") == "ERR unknown command (try /help)");
    CHECK(alice->ask("/") == "ERR unknown command (try /help)");
    CHECK(alice->ask("/help") ==
          "OK commands: /nick NAME, /join ROOM, /rooms, /who, /msg NICK TEXT, /help, /quit; "
          "//TEXT says /TEXT");

    CHECK(alice->ask(std::string(5000, 'x')) == "ERR line too long");
    alice->send_line("still here");
    CHECK(bob->line() == "alice: still here");  // nothing of the long line came first

    // Over-long across two sends, and followed by a normal line in the same send.
    alice->send(std::string(3000, 'y'));
    alice->send(std::string(2000, 'y') + "\nafter the long one\n");
    CHECK(alice->line() == "ERR line too long");
    CHECK(bob->line() == "alice: after the long one");

    const std::string long_but_fine(4000, 'z');
    alice->send_line(long_but_fine);
    CHECK(bob->line() == "alice: " + long_but_fine);
    alice->send("crlf ends this\r\n\n\n");  // CRLF accepted; empty lines ignored
    CHECK(bob->line() == "alice: crlf ends this");
    CHECK(bob->ask("/who") == "OK 2 in lobby: alice bob");
    CHECK(alice->ask("/who") == "OK 2 in lobby: alice bob");
  });
}

TEST_CASE("chat: a client killed mid-broadcast costs the others nothing") {
  for_each_model([](const std::string&, test::ServerProcess& server) {
    const auto& tcp = server.addresses[0];
    auto alice = join_as(tcp, "alice");
    auto bob = join_as(tcp, "bob");
    CHECK(alice->line() == "* bob joined");
    auto kim = join_as(tcp, "kim");
    CHECK(alice->line() == "* kim joined");
    CHECK(bob->line() == "* kim joined");

    constexpr long kLines = 20000;
    constexpr std::size_t kLength = 40;
    std::promise<void> kim_gone;
    auto kim_gone_future = kim_gone.get_future();
    std::atomic<long> kim_saw{-1};
    std::error_code kim_abort_error;
    std::string publish_error;
    // alice publishes half the lines, waits (bounded) until kim is gone, publishes the rest.
    std::thread publisher([&] {
      std::string batch;
      for (long seq = 0; seq < kLines; ++seq) {
        batch += numbered_line(seq, kLength);
        if (batch.size() < 8000 && seq + 1 != kLines / 2 && seq + 1 != kLines) continue;
        if (auto ec = reactor::send_all(alice->fd(), batch.data(), batch.size())) {
          publish_error = ec.message();
          return;
        }
        batch.clear();
        if (seq + 1 == kLines / 2 && kim_gone_future.wait_for(10s) != std::future_status::ready) {
          publish_error = "kim was not killed in time";
          return;
        }
      }
    });
    // kim reads part of the broadcast, then dies with a reset.
    std::thread killer([&] {
      for (;;) {
        auto line = kim->read_line();
        if (!line) break;
        const long seq = sequence_of(*line, "alice");
        if (seq >= 0) kim_saw = seq;
        if (seq >= 100) break;
      }
      // SO_LINGER {1, 0}: the server sees a reset, as if the client were killed.
      kim_abort_error = reactor::set_linger_abort(kim->fd());
      kim.reset();
      kim_gone.set_value();
    });

    long expected = 0;
    std::vector<std::string> others;
    while (expected < kLines) {
      auto line = bob->read_line();
      if (!line) {
        others.push_back("(no line: " + bob->last_error() + ")");
        break;
      }
      const long seq = sequence_of(*line, "alice");
      if (seq < 0) {
        others.push_back(*line);
      } else if (seq != expected) {
        others.push_back("out of order: " + *line + " instead of " + std::to_string(expected));
        break;
      } else {
        ++expected;
      }
    }
    killer.join();
    publisher.join();
    CHECK(publish_error == "");
    CHECK(kim_saw >= 100);
    CHECK_FALSE(kim_abort_error);
    CHECK(expected == kLines);
    // Each of them hears once that kim left (if not yet, within the receive timeout).
    while (std::find(others.begin(), others.end(), "* kim left") == others.end()) {
      auto line = bob->read_line();
      if (!line) break;
      others.push_back(*line);
    }
    CHECK_MESSAGE(others == std::vector<std::string>{"* kim left"}, joined(others));
    CHECK(alice->line() == "* kim left");
    std::vector<std::string> before;
    CHECK(bob->ask_past("/who", before) == "OK 2 in lobby: alice bob");
    CHECK(alice->ask_past("/who", before) == "OK 2 in lobby: alice bob");
    CHECK_MESSAGE(before.empty(), joined(before));
  });
}

TEST_CASE("chat drops a client that never reads, while a reading client gets every line in order") {
  for_each_model([](const std::string&, test::ServerProcess& server) {
    const auto& tcp = server.addresses[0];
    auto alice = join_as(tcp, "alice");
    auto reader = join_as(tcp, "reader");
    CHECK(alice->line() == "* reader joined");
    auto slow = join_as(tcp, "slow", 4096);  // a small window: the server's outbox fills
    CHECK(alice->line() == "* slow joined");
    CHECK(reader->line() == "* slow joined");

    constexpr std::size_t kLength = 100;
    constexpr std::size_t kCap = 32u << 20;  // give up publishing after 32 MiB
    constexpr long kBatch = 100;
    // alice never runs more than 2000 lines (200 KB) ahead of the reader: a reader that keeps up
    // this well must never be taken for a slow one, whatever the model's scheduling.
    constexpr long kWindow = 2000;
    std::mutex progress_mutex;
    std::condition_variable progress_changed;
    long received = 0;       // guarded by progress_mutex
    bool drop_seen = false;  // guarded by progress_mutex; also stops the publisher
    std::atomic<long> published{0};
    std::string publish_error;
    // alice publishes numbered lines until the reader sees slow dropped, then "end".
    std::thread publisher([&] {
      std::string batch;
      long seq = 0;
      for (;;) {
        {
          std::unique_lock lock(progress_mutex);
          if (!progress_changed.wait_for(
                  lock, 10s, [&] { return drop_seen || received >= seq + kBatch - kWindow; })) {
            publish_error = "the reader made no progress for 10 s";
            return;
          }
          if (drop_seen) break;
        }
        if (static_cast<std::size_t>(seq) * kLength >= kCap) break;
        batch.clear();
        for (long i = 0; i < kBatch; ++i) batch += numbered_line(seq++, kLength);
        if (auto ec = reactor::send_all(alice->fd(), batch.data(), batch.size())) {
          publish_error = ec.message();
          return;
        }
        published = seq;
      }
      if (auto ec = reactor::send_all(alice->fd(), "end\n", 4)) publish_error = ec.message();
    });
    auto report = [&](long count, bool dropped) {
      {
        std::lock_guard lock(progress_mutex);
        received = count;
        drop_seen = drop_seen || dropped;
      }
      progress_changed.notify_one();
    };

    long expected = 0;
    long seen_at_drop = -1;
    std::vector<std::string> others;
    for (;;) {
      auto line = reader->read_line();
      if (!line) {
        others.push_back("(no line: " + reader->last_error() + ")");
        break;
      }
      if (*line == "alice: end") break;
      const long seq = sequence_of(*line, "alice");
      if (seq == expected) {
        if (++expected % kBatch == 0) report(expected, false);
      } else if (seq >= 0) {
        others.push_back("out of order: " + line->substr(0, 20) + " instead of " +
                         std::to_string(expected));
        break;
      } else {
        if (*line == "* slow dropped (too slow)") {
          seen_at_drop = expected;
          report(expected, true);
        }
        others.push_back(*line);
      }
    }
    report(expected, true);  // stops the publisher if the reader gave up
    publisher.join();
    CHECK(publish_error == "");
    CHECK_MESSAGE(others == std::vector<std::string>{"* slow dropped (too slow)"}, joined(others));
    CHECK(expected == published.load());
    // The outbox holds 1 MiB before it overflows, so at least that much was published first.
    CHECK(static_cast<std::size_t>(seen_at_drop) * kLength >= (1u << 20));

    std::vector<std::string> before;
    CHECK(alice->ask_past("/who", before) == "OK 2 in lobby: alice reader");
    CHECK_MESSAGE(before == std::vector<std::string>{"* slow dropped (too slow)"}, joined(before));

    // What slow got before being cut off is an in-order prefix, and then its connection ends.
    long slow_expected = 0;
    bool slow_in_order = true;
    while (auto line = slow->read_line()) {
      if (sequence_of(*line, "alice") != slow_expected++) slow_in_order = false;
    }
    CHECK(slow_in_order);
    CHECK(slow_expected < published);
    CHECK((slow->last_error() == "eof" || slow->last_error() == std::strerror(ECONNRESET)));
  });
}

namespace {

// The pid of the server's child process that holds the TCP connection whose client end is
// `client_fd` (fork model: one child per connection), found through /proc; -1 if none.
pid_t child_serving(pid_t server, int client_fd) {
  sockaddr_storage local{};
  socklen_t length = sizeof(local);
  REQUIRE(::getsockname(client_fd, reinterpret_cast<sockaddr*>(&local), &length) == 0);
  const unsigned port = ntohs(reinterpret_cast<sockaddr_in*>(&local)->sin_port);
  // The server's end of that connection has our port as its remote port: find its inode.
  std::ifstream tcp("/proc/net/tcp");
  std::string line, inode;
  std::getline(tcp, line);
  while (std::getline(tcp, line)) {
    std::istringstream in(line);
    std::string slot, local_address, remote_address, state, queues, timer, retransmits, uid,
        timeout;
    in >> slot >> local_address >> remote_address >> state >> queues >> timer >> retransmits >>
        uid >> timeout >> inode;
    // Skip sockets that no process holds (inode 0: TIME_WAIT entries of earlier tests whose
    // remote port happens to be ours).
    if (std::stoul(remote_address.substr(remote_address.find(':') + 1), nullptr, 16) == port &&
        inode != "0") {
      break;
    }
    inode.clear();
  }
  if (inode.empty()) return -1;
  std::ifstream children("/proc/" + std::to_string(server) + "/task/" + std::to_string(server) +
                         "/children");
  for (pid_t child; children >> child;) {
    std::error_code ec;
    for (const auto& fd :
         std::filesystem::directory_iterator("/proc/" + std::to_string(child) + "/fd", ec)) {
      std::error_code link_ec;
      if (std::filesystem::read_symlink(fd.path(), link_ec).string() == "socket:[" + inode + "]") {
        return child;
      }
    }
  }
  return -1;
}

}  // namespace

TEST_CASE("chat under fork: a child killed with SIGKILL still says its user left the room") {
  auto server = test::start_server(
      kServer, {"--protocol", "chat", "--model", "fork", "--listen", "tcp://127.0.0.1:0"});
  REQUIRE(server);
  const auto& tcp = server->addresses[0];
  auto alice = join_as(tcp, "alice");
  auto bob = join_as(tcp, "bob");
  CHECK(alice->line() == "* bob joined");
  CHECK(bob->ask("/join dev") == "OK joined dev");
  // A fork child's publish is one-way (no acknowledgement): "* bob joined" may still sit in
  // bob's relay when alice joins. /who is a call that the parent answers after every frame bob
  // sent before it, so once it is answered the notice has gone (to nobody).
  CHECK(bob->ask("/who") == "OK 1 in dev: bob");
  CHECK(alice->line() == "* bob left");
  CHECK(alice->ask("/join dev") == "OK joined dev");
  CHECK(bob->line() == "* alice joined");
  const pid_t bobs_child = child_serving(server->process.pid(), bob->fd());
  REQUIRE(bobs_child > 0);
  REQUIRE(::kill(bobs_child, SIGKILL) == 0);
  CHECK(alice->line() == "* bob left");
  // The nick is free again and the room knows one member.
  CHECK(alice->ask("/who") == "OK 1 in dev: alice");
  auto again = join_as(tcp, "bob");
  test::stop_server(*server);
}
