// Scenario 4, garbage to chat. Random binary before /nick (every non-empty line answered exactly
// once, once telnet commands are removed), a 1 MiB line with no newline (one "ERR line too long",
// then the connection works), invalid UTF-8 after /nick (delivered to the room as the same
// bytes), and a burst of 10,000 commands in one write (10,000 replies, in order). The server is
// alive afterwards.
#include <random>

#include "fault_test.hpp"

namespace fault {
namespace {

constexpr std::size_t kMaxLine = 4096;  // the chat protocol's default max-line

// Keeps every line it receives.
class ChatClient final : public LineClient {
 public:
  void on_line(std::string_view line) override { lines.emplace_back(line); }
  // Index of the first line at or after `from` equal to `line`, or npos.
  std::size_t find(std::string_view line, std::size_t from = 0) const {
    for (std::size_t i = from; i < lines.size(); ++i) {
      if (lines[i] == line) return i;
    }
    return std::string::npos;
  }
  std::vector<std::string> lines;
};

bool equals_ignoring_case(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i]))) {
      return false;
    }
  }
  return true;
}

// A line without its telnet commands (IAC WILL/WONT/DO/DONT + option, IAC SB ... IAC SE, IAC +
// command) and stray IAC bytes, as chat removes them before anything else.
std::string without_telnet(std::string_view line) {
  std::string out;
  for (std::size_t i = 0; i < line.size();) {
    const auto b = static_cast<unsigned char>(line[i]);
    if (b != 0xff) {
      out += line[i++];
      continue;
    }
    if (i + 1 == line.size()) break;
    const auto command = static_cast<unsigned char>(line[i + 1]);
    if (command >= 0xfb && command != 0xff) {
      i += 3;
    } else if (command == 0xfa) {
      const std::size_t end = line.find("\xff\xf0", i + 2);
      i = end == std::string_view::npos ? line.size() : end + 2;
    } else {
      i += command >= 0xf0 ? 2 : 1;
    }
  }
  return out;
}

// How many replies chat owes for `input` from a client without a nick, by the protocol's rules:
// one per line ("\n" or "\r\n" ended) not empty once its telnet commands are removed, one per
// over-long line. Sets `commands` if a
// line would change state (/nick, /quit), which would make the count meaningless.
std::size_t replies_owed(std::string_view input, bool& commands) {
  std::size_t replies = 0;
  commands = false;
  while (!input.empty()) {
    const std::size_t newline = input.find('\n');
    if (newline == std::string_view::npos) break;  // unfinished: no reply yet
    std::string_view line = input.substr(0, newline);
    input.remove_prefix(newline + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line.empty()) continue;
    if (line.size() > kMaxLine) {
      ++replies;
      continue;
    }
    const std::string text = without_telnet(line);
    line = text;
    if (line.empty()) continue;
    ++replies;
    if (line.front() != '/') continue;
    const std::string_view word = line.substr(1, line.find_first_of(" \t") - 1);
    if (equals_ignoring_case(word, "nick") || equals_ignoring_case(word, "quit")) commands = true;
  }
  return replies;
}

bool is_reply(std::string_view line) {
  return line.starts_with("OK ") || line.starts_with("ERR ") || line == "OK" || line == "ERR";
}

TEST_CASE(
    "garbage to chat: binary input and oversized lines and bursts are answered and the server "
    "survives") {
  if (const auto* model = reactor::find_model(server_model()); model && !model->serves_hub) {
    MESSAGE("skipped: the '" << server_model() << "' model does not run hub protocols (chat)");
    return;
  }
  ServerProcess server;
  start_server(server, "chat");
  const sockaddr_in address = server.address();
  ClientLoop loop(64);
  auto run = [&](const std::function<bool()>& done, const char* what) {
    REQUIRE_MESSAGE(loop.run_until(done, 60s), "after 60 s still waiting for: " << what);
  };

  // Random binary before /nick: every non-empty line gets exactly one reply.
  auto& noise = loop.add<ChatClient>(address);
  run([&] { return noise.lines.size() >= 1; }, "the greeting");
  std::string garbage(256 * 1024, '\0');
  std::mt19937 rng(2024);
  for (char& c : garbage) c = static_cast<char>(rng() & 0xff);
  garbage += "\n";
  bool commands = false;
  const std::size_t owed = replies_owed(garbage, commands);
  REQUIRE_FALSE(commands);  // a fixed seed: the garbage holds no /nick or /quit line
  noise.send(garbage);
  noise.send("/nick noise\n");
  run(
      [&] {
        return noise.find("OK nick noise, joined lobby") != std::string::npos || noise.closed();
      },
      "the reply to /nick after the garbage");
  const std::size_t nick_at = noise.find("OK nick noise, joined lobby");
  REQUIRE(nick_at != std::string::npos);
  CHECK(nick_at - 1 == owed);  // line 0 is the greeting
  std::size_t non_replies = 0;
  for (std::size_t i = 1; i < nick_at; ++i) non_replies += is_reply(noise.lines[i]) ? 0 : 1;
  CHECK(non_replies == 0);

  // Two members in the lobby: alice misbehaves, bob watches.
  auto& alice = loop.add<ChatClient>(address);
  auto& bob = loop.add<ChatClient>(address);
  alice.send("/nick alice\n");
  run([&] { return alice.find("OK nick alice, joined lobby") != std::string::npos; },
      "alice's nick");
  bob.send("/nick bob\n");
  run([&] { return bob.find("OK nick bob, joined lobby") != std::string::npos; }, "bob's nick");
  // Under fork the notice travels through the parent's relay after bob's reply: wait for it.
  run([&] { return alice.find("* bob joined") != std::string::npos; }, "alice hearing bob join");

  // 1 MiB with no newline: one "ERR line too long", nothing reaches the room, and after the
  // newline the connection works.
  const std::size_t before_long = alice.lines.size();
  const std::size_t bob_before_long = bob.lines.size();
  alice.send(std::string(1 << 20, 'a'));
  alice.send("\n/who\n");
  run([&] { return alice.lines.size() >= before_long + 2; }, "the replies after the 1 MiB line");
  CHECK(alice.lines[before_long] == "ERR line too long");
  CHECK(alice.lines[before_long + 1] == "OK 3 in lobby: alice bob noise");

  // Invalid UTF-8 after /nick: delivered to the room as the same bytes.
  const std::string invalid = "\xfe \xc3\x28 \xe2\x82 \xf0\x28\x8c\xbc \x80 end";
  alice.send(invalid + "\n");
  const std::string said = "alice: " + invalid;
  run([&] { return bob.find(said, bob_before_long) != std::string::npos; },
      "bob to hear alice's invalid UTF-8");
  CHECK(bob.find(said, bob_before_long) == bob_before_long);  // the only line bob got meanwhile

  // A burst of 10,000 commands in one write, alone in a room: 10,000 replies, in order.
  auto& burst = loop.add<ChatClient>(address);
  burst.send("/nick burst\n/join burstroom\n");
  run([&] { return burst.find("OK joined burstroom") != std::string::npos; }, "burst to join");
  const std::size_t first = burst.lines.size();
  std::string commands_text;
  std::vector<std::string> expected;
  std::string nick = "burst";
  for (int i = 0; i < 10000; ++i) {
    if (i % 2 == 0) {
      nick = "b" + std::to_string(i);
      commands_text += "/nick " + nick + "\n";
      expected.push_back("OK nick " + nick);
    } else {
      commands_text += "/who\n";
      expected.push_back("OK 1 in burstroom: " + nick);
    }
  }
  burst.send(commands_text);
  run([&] { return burst.lines.size() >= first + expected.size() || burst.closed(); },
      "10,000 replies");
  REQUIRE(burst.lines.size() >= first + expected.size());
  std::size_t out_of_place = 0;
  for (std::size_t i = 0; i < expected.size(); ++i) {
    if (burst.lines[first + i] != expected[i] && out_of_place++ == 0) {
      CHECK_MESSAGE(false, "reply " << i << " is '" << burst.lines[first + i] << "', expected '"
                                    << expected[i] << "'");
    }
  }
  CHECK(out_of_place == 0);
  loop.run_for(1s);
  CHECK(burst.lines.size() == first + expected.size());

  // Alive: a fresh client gets a nick.
  auto& fresh = loop.add<ChatClient>(address);
  fresh.send("/nick fresh\n");
  run([&] { return fresh.find("OK nick fresh, joined lobby") != std::string::npos; },
      "a fresh nick");
  CHECK(loop.connect_failures() == 0);
  for (ChatClient* c : {&noise, &alice, &bob, &burst, &fresh}) CHECK_FALSE(c->closed());

  const std::string stopped = server.stop(30s);
  REQUIRE_MESSAGE(stopped.empty(), stopped);
  const Summary summary = server.summary();
  CHECK(summary.at("connections") == 5);
  CHECK(summary.at("failed") == 0);
  MESSAGE("garbage to chat: 256 KiB of random bytes got "
          << owed << " replies as owed; a 1 MiB line"
          << " got one ERR; invalid UTF-8 relayed byte-exact; 10,000 commands in one write got "
          << "10,000 replies in order");
}

}  // namespace
}  // namespace fault
