#include <doctest/doctest.h>

#include <memory>
#include <random>
#include <string>
#include <vector>

#include "support/fake_peer.hpp"
#include "protocols/chat.hpp"
#include "protocols/line_splitter.hpp"
#include "reactor/local_hub.hpp"

using reactor::protocols::ChatConfig;
using reactor::protocols::ChatProtocol;
using reactor::protocols::LineSplitter;
using test::FakeConnection;
using Lines = std::vector<std::string>;

namespace {

// Everything a splitter makes of `chunks`, too-long lines shown as "<too long>".
Lines split_all(LineSplitter& splitter, const std::vector<std::string>& chunks) {
  Lines out;
  for (const std::string& chunk : chunks) {
    std::span<const std::byte> input = reactor::as_bytes(chunk);
    while (const auto event = splitter.next(input)) {
      const bool line = event->kind == LineSplitter::Event::Kind::line;
      out.push_back(line ? std::string(event->text) : "<too long>");
      CHECK(splitter.held() <= splitter.max_line() + 1);
    }
    CHECK(input.empty());
    CHECK(splitter.held() <= splitter.max_line() + 1);
  }
  return out;
}

Lines split_all(const std::vector<std::string>& chunks, std::size_t max_line = 4096) {
  LineSplitter splitter(max_line);
  return split_all(splitter, chunks);
}

std::vector<std::string> bytewise(std::string_view text) {
  std::vector<std::string> chunks;
  for (const char c : text) chunks.emplace_back(1, c);
  return chunks;
}

std::vector<std::string> random_chunks(std::string_view text, unsigned seed) {
  std::mt19937 random(seed);
  std::vector<std::string> chunks;
  while (!text.empty()) {
    const std::size_t n = std::min<std::size_t>(text.size(), 1 + random() % 7);
    chunks.emplace_back(text.substr(0, n));
    text.remove_prefix(n);
  }
  return chunks;
}

// Several chat clients, each with its own FakePeer, on one LocalHub.
struct ChatRoom {
  reactor::LocalHub hub;
  ChatProtocol protocol;
  std::vector<std::unique_ptr<FakeConnection>> clients;

  explicit ChatRoom(ChatConfig config = {}) : protocol(std::move(config)) {}

  // A new client, greeting already read.
  FakeConnection& connect() {
    clients.push_back(std::make_unique<FakeConnection>(protocol, hub));
    clients.back()->peer.take();
    return *clients.back();
  }
  // A new client with a nick, in the lobby; everybody's output so far is discarded.
  FakeConnection& login(const std::string& nick) {
    FakeConnection& client = connect();
    client.feed("/nick " + nick + "\n");
    REQUIRE(client.peer.take() == "OK nick " + nick + ", joined lobby\n");
    for (auto& other : clients) other->peer.take();
    return client;
  }
};

}  // namespace

TEST_SUITE("line splitter") {
  TEST_CASE("lines end in \\n or \\r\\n and lose their terminator") {
    CHECK(split_all({"one\ntwo\r\nthree\n"}) == Lines{"one", "two", "three"});
  }

  TEST_CASE("empty lines are lines, a lone \\r inside a line is data") {
    CHECK(split_all({"\n\r\na\rb\n"}) == Lines{"", "", "a\rb"});
  }

  TEST_CASE("an unfinished line waits for its newline across chunks") {
    LineSplitter splitter;
    CHECK(split_all(splitter, {"hel", "lo"}).empty());
    CHECK(splitter.held() == 5);
    CHECK(split_all(splitter, {" world\npartial"}) == Lines{"hello world"});
    CHECK(split_all(splitter, {"\r", "\n"}) == Lines{"partial"});
    CHECK(splitter.held() == 0);
  }

  TEST_CASE("byte-by-byte and random chunking give the same lines as one chunk") {
    const std::string text = "alpha\r\nbeta\n\ngamma delta\r\n\r\nx\ry\n";
    const Lines whole = split_all({text});
    CHECK(whole == Lines{"alpha", "beta", "", "gamma delta", "", "x\ry"});
    CHECK(split_all(bytewise(text)) == whole);
    for (unsigned seed = 1; seed <= 50; ++seed)
      CHECK(split_all(random_chunks(text, seed)) == whole);
  }

  TEST_CASE("a line of exactly max_line bytes fits, with \\n or \\r\\n, in any chunking") {
    const std::string line(16, 'x');
    CHECK(split_all({line + "\n"}, 16) == Lines{line});
    CHECK(split_all({line + "\r\n"}, 16) == Lines{line});
    CHECK(split_all(bytewise(line + "\r\n"), 16) == Lines{line});
    CHECK(split_all({line, "\r", "\n"}, 16) == Lines{line});
  }

  TEST_CASE("a line one byte over max_line is too long, however it arrives") {
    const std::string line(17, 'x');
    CHECK(split_all({line + "\n"}, 16) == Lines{"<too long>"});
    CHECK(split_all({line + "\r\n"}, 16) == Lines{"<too long>"});
    CHECK(split_all(bytewise(line + "\n"), 16) == Lines{"<too long>"});
    CHECK(split_all({std::string(16, 'x') + "\r", "x\n"}, 16) == Lines{"<too long>"});
  }

  TEST_CASE("an over-long line is reported once and the next line comes through") {
    const std::string text = std::string(100, 'y') + "\nnext\n";
    CHECK(split_all({text}, 16) == Lines{"<too long>", "next"});
    CHECK(split_all(bytewise(text), 16) == Lines{"<too long>", "next"});
    for (unsigned seed = 1; seed <= 20; ++seed) {
      CHECK(split_all(random_chunks(text, seed), 16) == Lines{"<too long>", "next"});
    }
  }

  TEST_CASE("a megabyte without a newline is held to max_line + 1 bytes") {
    LineSplitter splitter;
    const std::string chunk(64 * 1024, 'z');
    Lines events;
    for (int i = 0; i < 16; ++i) {
      const Lines more = split_all(splitter, {chunk});
      events.insert(events.end(), more.begin(), more.end());
      CHECK(splitter.held() <= LineSplitter::kDefaultMaxLine + 1);
    }
    CHECK(events == Lines{"<too long>"});
    CHECK(split_all(splitter, {"z\nok\n"}) == Lines{"ok"});
  }

  TEST_CASE("finish hands over an unterminated last line, but not an over-long one") {
    LineSplitter splitter(16);
    CHECK(split_all(splitter, {"done\nlast\r"}) == Lines{"done"});
    CHECK(splitter.finish() == std::optional<std::string_view>("last"));
    CHECK(splitter.finish() == std::nullopt);

    CHECK(split_all(splitter, {std::string(40, 'q')}) == Lines{"<too long>"});
    CHECK(splitter.finish() == std::nullopt);
  }
}

TEST_SUITE("chat") {
  TEST_CASE("a new client is greeted and asked for a nick") {
    ChatRoom room;
    FakeConnection client(room.protocol, room.hub);
    const Lines lines = client.peer.take_lines();
    REQUIRE(lines.size() == 1);
    CHECK(lines[0].starts_with("* "));
    CHECK(lines[0].find("/nick NAME") != std::string::npos);
  }

  TEST_CASE("a valid nick puts the client in the lobby and the lobby hears of it") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.connect();
    bob.feed("/nick bob\n");
    CHECK(bob.peer.take() == "OK nick bob, joined lobby\n");
    CHECK(alice.peer.take() == "* bob joined\n");
    CHECK(room.hub.members("lobby") == Lines{"alice", "bob"});
  }

  TEST_CASE("nicks are 1 to 32 of letters, digits, _ and -") {
    ChatRoom room;
    FakeConnection& client = room.connect();
    const std::vector<std::string> bad_nicks = {
        "a b", "bad!", "caf\xc3\xa9", std::string(33, 'n'), "*star", "[x]"};
    for (const std::string& bad : bad_nicks) {
      CAPTURE(bad);
      client.feed("/nick " + bad + "\n");
      CHECK(client.peer.take().starts_with("ERR invalid nick"));
    }
    client.feed("/nick\n");
    CHECK(client.peer.take().starts_with("ERR usage"));
    CHECK(room.hub.rooms().empty());

    const std::string longest = "Aa0_-" + std::string(27, 'z');
    client.feed("/nick " + longest + "\n");
    CHECK(client.peer.take() == "OK nick " + longest + ", joined lobby\n");
  }

  TEST_CASE("a nick held by another client is refused, server-wide") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    alice.feed("/join dev\n");
    FakeConnection& other = room.connect();
    other.feed("/nick alice\n");
    CHECK(other.peer.take() == "ERR nick taken: alice\n");
    other.feed("hello?\n");
    CHECK(other.peer.take().starts_with("ERR set a nick first"));
    other.feed("/nick Alice\n");  // nicks ignore case
    CHECK(other.peer.take() == "ERR nick taken: Alice\n");
  }

  TEST_CASE("text and room commands before a nick get ERR; /rooms and /help work") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& anon = room.connect();
    for (const char* line : {"hello\n", "/join dev\n", "/who\n", "/msg alice hi\n"}) {
      CAPTURE(line);
      anon.feed(line);
      CHECK(anon.peer.take() == "ERR set a nick first: /nick NAME\n");
    }
    anon.feed("/rooms\n/help\n");
    const Lines replies = anon.peer.take_lines();
    REQUIRE(replies.size() == 2);
    CHECK(replies[0] == "OK 1 room: lobby(1)");
    CHECK(replies[1].starts_with("OK commands: /nick NAME"));
    CHECK(alice.peer.take().empty());
  }

  TEST_CASE("a plain line goes to every other member of the room, and only them") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    FakeConnection& carol = room.login("carol");
    FakeConnection& dave = room.login("dave");
    dave.feed("/join dev\n");
    for (auto& client : room.clients) client->peer.take();

    alice.feed("hi all\n");
    CHECK(alice.peer.take().empty());
    CHECK(bob.peer.take() == "alice: hi all\n");
    CHECK(carol.peer.take() == "alice: hi all\n");
    CHECK(dave.peer.take().empty());
  }

  TEST_CASE("joining a room tells the old room you left and the new one you came") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    FakeConnection& carol = room.login("carol");
    carol.feed("/join dev\n");
    CHECK(carol.peer.take() == "OK joined dev\n");
    alice.peer.take();
    bob.peer.take();

    bob.feed("/join dev\n");
    CHECK(bob.peer.take() == "OK joined dev\n");
    CHECK(alice.peer.take() == "* bob left\n");
    CHECK(carol.peer.take() == "* bob joined\n");

    bob.feed("/join dev\n");
    CHECK(bob.peer.take() == "OK joined dev\n");
    CHECK(carol.peer.take().empty());

    bob.feed("/join bad/room\n/join\n");
    const Lines errors = bob.peer.take_lines();
    REQUIRE(errors.size() == 2);
    CHECK(errors[0].starts_with("ERR invalid room"));
    CHECK(errors[1].starts_with("ERR usage"));
  }

  TEST_CASE("/rooms lists every room with its member count, sorted, on one line") {
    ChatRoom room;
    room.login("alice");
    room.login("bob");
    FakeConnection& carol = room.login("carol");
    carol.feed("/join dev\n");
    carol.peer.take();
    carol.feed("/rooms\n");
    CHECK(carol.peer.take() == "OK 2 rooms: dev(1) lobby(2)\n");
  }

  TEST_CASE("/rooms says room for one and rooms for none or several") {
    ChatRoom room;
    FakeConnection& anon = room.connect();
    anon.feed("/rooms\n");
    CHECK(anon.peer.take() == "OK 0 rooms\n");
    FakeConnection& amy = room.login("amy");
    amy.feed("/rooms\n");
    CHECK(amy.peer.take() == "OK 1 room: lobby(1)\n");
    room.login("bob").feed("/join dev\n");
    amy.peer.take();
    amy.feed("/rooms\n");
    CHECK(amy.peer.take() == "OK 2 rooms: dev(1) lobby(1)\n");
  }

  TEST_CASE("a line starting with // says the line from its second character") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    alice.feed("//etc/hosts is where it lives\n");
    CHECK(alice.peer.take() == "");
    CHECK(bob.peer.take() == "alice: /etc/hosts is where it lives\n");
    alice.feed("///\n//\n");
    CHECK(bob.peer.take() == "alice: //\nalice: /\n");
    FakeConnection& anon = room.connect();
    anon.feed("//x\n");
    CHECK(anon.peer.take() == "ERR set a nick first: /nick NAME\n");
  }

  TEST_CASE("/who lists the nicks in your room, sorted, on one line") {
    ChatRoom room;
    room.login("zed");
    FakeConnection& amy = room.login("amy");
    FakeConnection& bob = room.login("bob");
    bob.feed("/join dev\n");
    for (auto& client : room.clients) client->peer.take();
    amy.feed("/who\n");
    CHECK(amy.peer.take() == "OK 2 in lobby: amy zed\n");
    bob.feed("/WHO\n");
    CHECK(bob.peer.take() == "OK 1 in dev: bob\n");
  }

  TEST_CASE("/msg delivers to that nick only, in any room") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    FakeConnection& carol = room.login("carol");
    bob.feed("/join dev\n");
    alice.peer.take();
    carol.peer.take();
    bob.peer.take();

    alice.feed("/msg bob meet  me   later\n");
    CHECK(alice.peer.take() == "OK sent to bob\n");
    CHECK(bob.peer.take() == "[private] alice: meet  me   later\n");
    CHECK(carol.peer.take().empty());

    alice.feed("/msg nobody hi\n/msg bob\n/msg\n/msg b@d hi\n");
    CHECK(alice.peer.take_lines() == Lines{"ERR no such nick", "ERR usage: /msg NICK TEXT",
                                           "ERR usage: /msg NICK TEXT", "ERR no such nick"});
    CHECK(bob.peer.take().empty());
  }

  TEST_CASE("changing nick tells the room and frees the old name") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    alice.feed("/nick alicia\n");
    CHECK(alice.peer.take() == "OK nick alicia\n");
    CHECK(bob.peer.take() == "* alice is now alicia\n");
    alice.feed("hi\n");
    CHECK(bob.peer.take() == "alicia: hi\n");
    alice.feed("/nick alicia\n/nick bob\n");
    CHECK(alice.peer.take_lines() == Lines{"OK nick alicia", "ERR nick taken: bob"});

    FakeConnection& newcomer = room.connect();
    newcomer.feed("/nick alice\n");
    CHECK(newcomer.peer.take() == "OK nick alice, joined lobby\n");
  }

  TEST_CASE("nicks ignore case: Alice is taken while alice is; others see each one's spelling") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& other = room.connect();
    other.feed("/nick Alice\n");
    CHECK(other.peer.take() == "ERR nick taken: Alice\n");
    other.feed("/nick ALICE\n");
    CHECK(other.peer.take() == "ERR nick taken: ALICE\n");
    FakeConnection& bob = room.login("Bob");
    alice.peer.take();
    alice.feed("/msg BOB hi\n");
    CHECK(alice.peer.take() == "OK sent to BOB\n");
    CHECK(bob.peer.take() == "[private] alice: hi\n");
    bob.feed("hello\n");
    CHECK(alice.peer.take() == "Bob: hello\n");
    // A new spelling of one's own nick is a rename the room hears of, not "taken".
    alice.feed("/nick ALICE\n");
    CHECK(alice.peer.take() == "OK nick ALICE\n");
    CHECK(bob.peer.take() == "* alice is now ALICE\n");
    // Released in any spelling: the old one is free once renamed.
    alice.feed("/nick carol\n");
    CHECK(alice.peer.take() == "OK nick carol\n");
    other.feed("/nick Alice\n");
    CHECK(other.peer.take() == "OK nick Alice, joined lobby\n");
  }

  TEST_CASE("rooms ignore case: /join DEV enters dev, and the room is listed once") {
    ChatRoom room;
    FakeConnection& amy = room.login("amy");
    FakeConnection& bob = room.login("bob");
    amy.feed("/join dev\n");
    CHECK(amy.peer.take() == "OK joined dev\n");
    CHECK(bob.peer.take() == "* amy left\n");
    bob.feed("/join DEV\n");
    CHECK(bob.peer.take() == "OK joined dev\n");  // the room as its creator spelled it
    CHECK(amy.peer.take() == "* bob joined\n");
    bob.feed("/join Dev\n");  // already there, in any spelling
    CHECK(bob.peer.take() == "OK joined dev\n");
    CHECK(amy.peer.take() == "");
    bob.feed("/rooms\n");
    CHECK(bob.peer.take() == "OK 1 room: dev(2)\n");
    amy.feed("hi\n");
    CHECK(bob.peer.take() == "amy: hi\n");
  }

  TEST_CASE("/who, /rooms and notices show each nick and room as its owner spelled it") {
    ChatRoom room;
    FakeConnection& alice = room.login("Alice");
    FakeConnection& bob = room.login("bob");
    FakeConnection& other = room.connect();
    other.feed("/nick alice\n");  // Alice vs alice: one nick
    CHECK(other.peer.take() == "ERR nick taken: alice\n");
    bob.feed("/who\n");
    CHECK(bob.peer.take() == "OK 2 in lobby: Alice bob\n");  // sorted ignoring case
    bob.feed("/msg ALICE hi\n");
    CHECK(bob.peer.take() == "OK sent to ALICE\n");
    CHECK(alice.peer.take() == "[private] bob: hi\n");
    alice.feed("/msg BOB hello\n");
    CHECK(bob.peer.take() == "[private] Alice: hello\n");
    alice.peer.take();

    // The room keeps its creator's spelling while it exists, whoever joins in what spelling.
    alice.feed("/join Dev\n");
    CHECK(alice.peer.take() == "OK joined Dev\n");
    CHECK(bob.peer.take() == "* Alice left\n");
    bob.feed("/join DEV\n");
    CHECK(bob.peer.take() == "OK joined Dev\n");
    CHECK(alice.peer.take() == "* bob joined\n");
    bob.feed("/who\n");
    CHECK(bob.peer.take() == "OK 2 in Dev: Alice bob\n");
    other.feed("/rooms\n");
    CHECK(other.peer.take() == "OK 1 room: Dev(2)\n");

    // Lobby vs lobby: the lobby, emptied and created again as "Lobby", is "Lobby" for newcomers.
    alice.feed("/join Lobby\n");
    CHECK(alice.peer.take() == "OK joined Lobby\n");
    bob.peer.take();
    other.feed("/nick carol\n");
    CHECK(other.peer.take() == "OK nick carol, joined Lobby\n");
    CHECK(alice.peer.take() == "* carol joined\n");
    other.feed("/rooms\n");
    CHECK(other.peer.take() == "OK 2 rooms: Dev(1) Lobby(2)\n");

    // A new spelling of one's own nick is what /who shows from then on.
    alice.feed("/nick ALICE\n");
    CHECK(alice.peer.take() == "OK nick ALICE\n");
    CHECK(other.peer.take() == "* Alice is now ALICE\n");
    other.feed("/who\n");
    CHECK(other.peer.take() == "OK 2 in Lobby: ALICE carol\n");
  }

  TEST_CASE("unknown commands get ERR and change nothing; commands ignore case") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    alice.feed("/dance\n/\n/ nick x\n");
    CHECK(alice.peer.take_lines() == Lines(3, "ERR unknown command (try /help)"));
    CHECK(bob.peer.take().empty());
    alice.feed("/NiCk Al\n");
    CHECK(alice.peer.take() == "OK nick Al\n");
  }

  TEST_CASE("an over-long line gets ERR once and the connection stays usable") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    const std::string huge(10000, 'h');
    CHECK(alice.feed(huge) == huge.size());
    CHECK(alice.peer.take() == "ERR line too long\n");
    CHECK(alice.feed(huge + "\nstill here\n") == huge.size() + 12);
    CHECK(alice.peer.take().empty());
    CHECK(bob.peer.take() == "alice: still here\n");

    const std::string just_fits(4096, 'f');
    alice.feed(just_fits + "\r\n");
    CHECK(bob.peer.take() == "alice: " + just_fits + "\n");
    CHECK(alice.peer.take().empty());
    alice.feed(std::string(4097, 'g') + "\n");
    CHECK(alice.peer.take() == "ERR line too long\n");
    CHECK(bob.peer.take().empty());
  }

  TEST_CASE("\\r\\n line ends are understood and never echoed into nicks or text") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.connect();
    bob.feed("/nick bob\r\n");
    CHECK(bob.peer.take() == "OK nick bob, joined lobby\n");
    alice.peer.take();
    bob.feed("hello\r\n/who\r\n");
    CHECK(alice.peer.take() == "bob: hello\n");
    CHECK(bob.peer.take() == "OK 2 in lobby: alice bob\n");
  }

  TEST_CASE("a conversation fed byte by byte or in random chunks reads the same") {
    const std::string script =
        "/nick carol\r\nhello there\n/join dev\r\n/who\n/rooms\n/msg alice psst\r\nbye\n";
    const auto run = [&](const std::vector<std::string>& chunks) {
      ChatRoom room;
      FakeConnection& alice = room.login("alice");
      FakeConnection& carol = room.connect();
      for (const std::string& chunk : chunks) {
        CHECK(carol.feed(chunk) == chunk.size());
      }
      return std::pair{carol.peer.take(), alice.peer.take()};
    };
    const auto whole = run({script});
    CHECK(whole.first ==
          "OK nick carol, joined lobby\nOK joined dev\nOK 1 in dev: carol\n"
          "OK 2 rooms: dev(1) lobby(1)\nOK sent to alice\n");
    CHECK(whole.second ==
          "* carol joined\ncarol: hello there\n* carol left\n[private] carol: psst\n");
    CHECK(run(bytewise(script)) == whole);
    for (unsigned seed = 1; seed <= 20; ++seed) CHECK(run(random_chunks(script, seed)) == whole);
  }

  TEST_CASE("text is relayed as bytes: invalid UTF-8 and TAB arrive unchanged") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    const std::string text("\xfe bytes\tand \xc3( \x80 \xe2\x82");
    alice.feed(text + "\n");
    CHECK(bob.peer.take() == "alice: " + text + "\n");
  }

  TEST_CASE("a line with a C0 control other than TAB is refused and reaches nobody") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    // The forgery: erase the line, return the cursor, print a fake server line.
    for (const std::string& line :
         {std::string("\x1b[2K\rSERVER: you have been kicked"), std::string("ring\x07ring"),
          std::string("nul\0byte", 8), std::string("back\bspace"), std::string("cr\rinside"),
          std::string("\x1b]0;title\x07"), std::string("/msg bob \x1b[31mred")}) {
      CAPTURE(line);
      alice.feed(line + "\n");
      CHECK(alice.peer.take() == "ERR control characters are not allowed (TAB is)\n");
      CHECK(bob.peer.take() == "");
    }
    alice.feed("tab\tis fine\n");
    CHECK(bob.peer.take() == "alice: tab\tis fine\n");
  }

  TEST_CASE("a line with DEL is refused") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    alice.feed("oops\x7f\x7f\n");
    CHECK(alice.peer.take() == "ERR control characters are not allowed (TAB is)\n");
    CHECK(bob.peer.take() == "");
  }

  TEST_CASE("telnet commands and stray IAC bytes are removed from lines") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    const std::vector<std::pair<std::string, std::string>> cases = {
        {"\xff\xfb\x01hello", "hello"},  // IAC WILL ECHO
        {"a\xff\xfd\x03"
         "b",
         "ab"},                              // IAC DO SUPPRESS-GO-AHEAD
        {"\xff\xfa\x18\x01\xff\xf0x", "x"},  // IAC SB TERMINAL-TYPE SEND IAC SE
        {"bell\xff\xf4", "bell"},            // IAC IP (what telnet sends on ^C)
        {"stray \xff"
         "end\xff",
         "stray end"},           // stray IAC, IAC at the end
        {"two\xff\xff", "two"},  // IAC IAC
    };
    for (const auto& [sent, relayed] : cases) {
      CAPTURE(sent);
      alice.feed(sent + "\n");
      CHECK(bob.peer.take() == "alice: " + relayed + "\n");
      CHECK(alice.peer.take() == "");
    }
    // Negotiation alone makes an empty line (ignored); a command behind it still works.
    alice.feed("\xff\xfb\x18\xff\xfd\x01\n\xff\xfb\x18/who\n");
    CHECK(alice.peer.take() == "OK 2 in lobby: alice bob\n");
    CHECK(bob.peer.take() == "");
  }

  TEST_CASE("binary garbage gets at most ERR replies and leaves the session usable") {
    ChatRoom room;
    FakeConnection& client = room.connect();
    std::mt19937 random(7);
    std::string garbage(200000, '\0');
    for (char& c : garbage) c = static_cast<char>(random() & 0xff);
    for (const std::string& chunk : random_chunks(garbage, 3)) client.feed(chunk);
    client.feed("\n");  // ends the last garbage line
    for (const std::string& line : client.peer.take_lines()) {
      CAPTURE(line);
      CHECK(line.starts_with("ERR "));
    }
    client.feed("/nick survivor\n");
    CHECK(client.peer.take() == "OK nick survivor, joined lobby\n");
  }

  TEST_CASE("a client dropped as too slow is announced as such and forgotten") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& slow = room.login("slow");
    CHECK(room.protocol.max_outbox() == 1u << 20);

    slow.closed(reactor::make_error_code(reactor::Errc::too_slow));
    CHECK(alice.peer.take() == "* slow dropped (too slow)\n");
    CHECK(slow.peer.sends_after_gone == 0);
    CHECK(room.hub.members("lobby") == Lines{"alice"});

    alice.feed("anyone?\n");
    CHECK(slow.peer.sends_after_gone == 0);
    FakeConnection& again = room.connect();
    again.feed("/nick slow\n");
    CHECK(again.peer.take() == "OK nick slow, joined lobby\n");
  }

  TEST_CASE("a client that goes away for another reason is announced as left") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    bob.feed("/join dev\n");
    FakeConnection& carol = room.login("carol");
    carol.feed("/join dev\n");
    for (auto& client : room.clients) client->peer.take();

    carol.closed(std::make_error_code(std::errc::connection_reset));
    CHECK(bob.peer.take() == "* carol left\n");
    CHECK(alice.peer.take().empty());
    bob.closed();
    CHECK(room.hub.rooms().size() == 1);
    CHECK(room.hub.members("lobby") == Lines{"alice"});
  }

  TEST_CASE("a client that never chose a nick leaves without a notice") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& anon = room.connect();
    anon.closed();
    CHECK(alice.peer.take().empty());
  }

  TEST_CASE("/quit says goodbye, closes, and ignores whatever follows") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    CHECK(bob.feed("/quit\nnot said\n/nick zed\n") == 25);
    CHECK(bob.peer.take() == "OK bye\n");
    CHECK(bob.peer.close_calls == 1);
    CHECK(alice.peer.take().empty());
    bob.feed("more\n");
    CHECK(bob.peer.take().empty());
    bob.closed();
    CHECK(alice.peer.take() == "* bob left\n");
  }

  TEST_CASE("EOF handles an unterminated last line, then closes") {
    ChatRoom room;
    FakeConnection& alice = room.login("alice");
    FakeConnection& bob = room.login("bob");
    bob.feed("see you");
    CHECK(alice.peer.take().empty());
    bob.eof();
    CHECK(alice.peer.take() == "bob: see you\n");
    CHECK(bob.peer.close_calls == 1);
  }

  TEST_CASE("chat options: lobby and max-line; anything else is a clear error") {
    ChatConfig config;
    std::string error;
    CHECK(reactor::protocols::parse_chat_config("lobby=main, max-line=100", config, error));
    CHECK(config.lobby == "main");
    CHECK(config.max_line == 100);

    for (const char* bad : {"lobby=", "lobby=a b", "max-line=1", "max-line=x", "max-line=70000",
                            "colour=red", "max-line"}) {
      CAPTURE(bad);
      ChatConfig ignored;
      error.clear();
      CHECK_FALSE(reactor::protocols::parse_chat_config(bad, ignored, error));
      CHECK_FALSE(error.empty());
      CHECK_FALSE(error.starts_with("chat"));  // reactor-server adds "--protocol chat: " once
    }

    ChatRoom room(config);
    FakeConnection& amy = room.connect();
    amy.feed("/nick amy\n");
    CHECK(amy.peer.take() == "OK nick amy, joined main\n");
    amy.feed(std::string(101, 'x') + "\n");
    CHECK(amy.peer.take() == "ERR line too long\n");
  }
}

TEST_SUITE("local hub") {
  // The Hub itself compares names and rooms ignoring ASCII case and lists them as spelled by the
  // peer that claimed the name or created the room.
  TEST_CASE("names: one per spelling-insensitive key, listed and reached in any spelling") {
    reactor::LocalHub hub;
    test::FakePeer alice, other, bob;
    CHECK(hub.claim_name("Alice", alice));
    CHECK_FALSE(hub.claim_name("alice", other));
    CHECK_FALSE(hub.claim_name("ALICE", other));
    CHECK(hub.claim_name("bob", bob));
    hub.join("lobby", alice);
    hub.join("LOBBY", bob);
    CHECK(hub.members("Lobby") == Lines{"Alice", "bob"});
    CHECK(hub.send_to("aLiCe", reactor::as_bytes("hi\n")));
    CHECK(alice.take() == "hi\n");
    CHECK_FALSE(hub.send_to("carol", reactor::as_bytes("hi\n")));
    // Renaming to a new spelling of one's own name keeps it and shows the new spelling.
    CHECK(hub.claim_name("ALICE", alice));
    CHECK(hub.members("lobby") == Lines{"ALICE", "bob"});
    CHECK_FALSE(hub.claim_name("alice", other));
    hub.release_name(alice);
    CHECK(hub.claim_name("alice", other));
    CHECK_FALSE(hub.send_to("x", reactor::as_bytes("")));
  }

  TEST_CASE("rooms: the creator's spelling while the room exists, sorted ignoring case") {
    reactor::LocalHub hub;
    test::FakePeer a, b, c;
    hub.join("Lobby", a);
    hub.join("lobby", b);
    hub.join("dev", c);
    REQUIRE(hub.rooms().size() == 2);
    CHECK(hub.rooms()[0].name == "dev");
    CHECK(hub.rooms()[1].name == "Lobby");
    CHECK(hub.rooms()[1].members == 2);
    hub.publish("LOBBY", reactor::as_bytes("x\n"), &a);
    CHECK(a.take().empty());
    CHECK(b.take() == "x\n");
    hub.leave("LOBBY", a);
    hub.forget(b);
    hub.join("LoBbY", c);  // created again: the new creator's spelling
    REQUIRE(hub.rooms().size() == 2);
    CHECK(hub.rooms()[1].name == "LoBbY");
  }
}
