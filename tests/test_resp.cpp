// The resp protocol without sockets: the parser as a pure function (split at every offset),
// the glob matcher, and sessions on FakeConnections sharing one store and one LocalHub.
#include <doctest/doctest.h>

#include <memory>
#include <string>
#include <vector>

#include "support/fake_peer.hpp"
#include "protocols/registry.hpp"
#include "protocols/resp/glob.hpp"
#include "protocols/resp/parser.hpp"
#include "protocols/resp/protocol.hpp"
#include "reactor/local_hub.hpp"

using reactor::protocols::RespProtocol;
using reactor::protocols::resp::glob_match;
using reactor::protocols::resp::ParserLimits;
using reactor::protocols::resp::ParseStatus;
using reactor::protocols::resp::RequestParser;
using reactor::protocols::resp::RespConfig;
using test::FakeConnection;

namespace {

std::int64_t g_now = 1'700'000'000'000;
std::int64_t fake_clock() {
  return g_now;
}

// Every request the parser finds in `input`, arguments joined by '|'; "<error: TEXT>" ends it.
std::vector<std::string> parse_all(std::string_view input, ParserLimits limits = {}) {
  RequestParser parser(limits);
  std::vector<std::string> out;
  while (true) {
    const auto r = parser.parse(input);
    if (r.status == ParseStatus::incomplete) break;
    if (r.status == ParseStatus::error) {
      out.push_back("<error: " + std::string(r.error) + ">");
      break;
    }
    std::string joined;
    for (const auto a : parser.args()) joined += (joined.empty() ? "" : "|") + std::string(a);
    out.push_back(joined);
    input.remove_prefix(r.consumed);
  }
  return out;
}

// A server (protocol + hub) with a fake clock, and helpers to talk to it.
struct Server {
  explicit Server(RespConfig config = {}) : protocol(std::move(config)) {
    protocol.state().clock = &fake_clock;
  }
  std::unique_ptr<FakeConnection> connect() {
    return std::make_unique<FakeConnection>(protocol, hub);
  }
  RespProtocol protocol;
  reactor::LocalHub hub;
};

std::string ask(FakeConnection& c, std::string_view request) {
  c.feed(request);
  return c.peer.take();
}

const std::string kPipeline =
    "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nva\r\nl\r\n"  // binary-safe value with CRLF inside
    "GET key\r\n"
    "*2\r\n$4\r\nINCR\r\n$1\r\nn\r\n"
    "incrby n 41\r\n"
    "*0\r\n"
    "\r\n"
    "MGET key n none\r\n"
    "PING\r\n";
const std::string kPipelineReplies =
    "+OK\r\n$5\r\nva\r\nl\r\n:1\r\n:42\r\n*3\r\n$5\r\nva\r\nl\r\n$2\r\n42\r\n$-1\r\n+PONG\r\n";

}  // namespace

TEST_CASE("the parser reads multibulk and inline requests, quotes unescaped") {
  CHECK(parse_all("*2\r\n$3\r\nGET\r\n$1\r\nk\r\n") == std::vector<std::string>{"GET|k"});
  CHECK(parse_all("set k \"a b\\x41\\n\" 'it\\'s'\n") ==
        std::vector<std::string>{"set|k|a bA\n|it's"});
  CHECK(parse_all("  \r\n").size() == 1);  // a blank line is an empty request
  CHECK(parse_all("*0\r\n*-1\r\nPING\r\n") == std::vector<std::string>{"", "", "PING"});
  CHECK(parse_all("*1\r\n$0\r\n\r\n") == std::vector<std::string>{""});
}

TEST_CASE("the parser needs every byte: split at every offset it waits, then reads the same") {
  const std::vector<std::string> whole = parse_all(kPipeline);
  REQUIRE(whole.size() == 8);
  for (std::size_t cut = 0; cut < kPipeline.size(); ++cut) {
    RequestParser parser;
    const std::string_view input(kPipeline);
    std::size_t pos = 0, found = 0;
    // Only the first `cut` bytes: everything complete inside them is found, nothing more.
    while (true) {
      const auto r = parser.parse(input.substr(pos, cut - std::min(cut, pos)));
      if (r.status != ParseStatus::complete) {
        REQUIRE(r.status == ParseStatus::incomplete);
        break;
      }
      pos += r.consumed;
      ++found;
    }
    CHECK(pos <= cut);
    CHECK(found <= whole.size());
  }
}

TEST_CASE("protocol errors have Redis's texts") {
  auto error_of = [](std::string_view input, ParserLimits limits = {}) {
    const auto all = parse_all(input, limits);
    return all.empty() ? std::string("<none>") : all.back();
  };
  CHECK(error_of("*x\r\n") == "<error: Protocol error: invalid multibulk length>");
  CHECK(error_of("*2\r\nx\r\n") == "<error: Protocol error: expected '$', got 'x'>");
  CHECK(error_of("*2\r\nx") == "<none>");  // Redis waits for the line first
  CHECK(error_of("*1\r\n$-1\r\n") == "<error: Protocol error: invalid bulk length>");
  CHECK(error_of("*1\r\n$abc\r\n") == "<error: Protocol error: invalid bulk length>");
  CHECK(error_of("\"open\r\n") == "<error: Protocol error: unbalanced quotes in request>");
  CHECK(error_of("\"a\"b\r\n") == "<error: Protocol error: unbalanced quotes in request>");
  ParserLimits small;
  small.max_inline = 16;
  small.max_bulk = 4;
  small.max_multibulk = 2;
  CHECK(error_of(std::string(17, 'a'), small) == "<error: Protocol error: too big inline request>");
  CHECK(error_of(std::string(16, 'a'), small) == "<none>");
  CHECK(error_of("*" + std::string(17, '1'), small) ==
        "<error: Protocol error: too big mbulk count string>");
  CHECK(error_of("*1\r\n$" + std::string(17, '1'), small) ==
        "<error: Protocol error: too big bulk count string>");
  CHECK(error_of("*3\r\n", small) == "<error: Protocol error: invalid multibulk length>");
  CHECK(error_of("*1\r\n$5\r\n", small) == "<error: Protocol error: invalid bulk length>");
  CHECK(error_of("*1\r\n$4\r\nabcd\r\n", small) == "abcd");
}

TEST_CASE("integers parse the way Redis's string2ll does") {
  using reactor::protocols::resp::parse_int64;
  std::int64_t v = 0;
  CHECK((parse_int64("0", v) && v == 0));
  CHECK((parse_int64("-9223372036854775808", v) && v == INT64_MIN));
  CHECK((parse_int64("9223372036854775807", v) && v == INT64_MAX));
  for (const char* bad : {"", "-", "01", "-0", "+1", " 1", "1 ", "9223372036854775808", "1a"}) {
    CHECK_MESSAGE(!parse_int64(bad, v), bad);
  }
}

TEST_CASE("glob patterns match as in Redis") {
  CHECK(glob_match("*", "anything"));
  CHECK(glob_match("h?llo", "hello"));
  CHECK(glob_match("h*llo", "heeeello"));
  CHECK(glob_match("h[ae]llo", "hallo"));
  CHECK_FALSE(glob_match("h[ae]llo", "hillo"));
  CHECK(glob_match("h[^e]llo", "hallo"));
  CHECK_FALSE(glob_match("h[^e]llo", "hello"));
  CHECK(glob_match("h[a-c]llo", "hbllo"));
  CHECK(glob_match("a\\*b", "a*b"));
  CHECK_FALSE(glob_match("a\\*b", "axb"));
  CHECK(glob_match("*a*b*c*", "xxaxxbxxcxx"));
  CHECK_FALSE(glob_match("*a*b*c*", "xxaxxcxxbxx"));
  CHECK(glob_match("SAVE", "save", true));
}

TEST_CASE("a pipelined batch gets the same replies however the bytes are split") {
  Server server;
  {
    auto c = server.connect();
    CHECK(ask(*c, kPipeline) == kPipelineReplies);
    CHECK(c->unconsumed() == 0);
  }
  for (std::size_t cut = 1; cut < kPipeline.size(); ++cut) {
    ask(*server.connect(), "FLUSHALL\r\n");
    auto c = server.connect();
    c->feed(std::string_view(kPipeline).substr(0, cut));
    c->feed(std::string_view(kPipeline).substr(cut));
    CHECK_MESSAGE(c->peer.take() == kPipelineReplies, "split at " << cut);
    CHECK(c->unconsumed() == 0);
  }
  ask(*server.connect(), "FLUSHALL\r\n");
  auto c = server.connect();
  c->feed_bytewise(kPipeline);
  CHECK(c->peer.take() == kPipelineReplies);
}

TEST_CASE("a whole pipelined batch is answered with one send") {
  Server server;
  auto c = server.connect();
  c->feed("PING\r\nPING\r\nPING\r\nSET a 1\r\nGET a\r\n");
  CHECK(c->peer.sends == 1);
  CHECK(c->peer.take() == "+PONG\r\n+PONG\r\n+PONG\r\n+OK\r\n$1\r\n1\r\n");
}

TEST_CASE("errors are worded as in Redis") {
  Server server;
  auto c = server.connect();
  CHECK(ask(*c, "GET\r\n") == "-ERR wrong number of arguments for 'get' command\r\n");
  CHECK(ask(*c, "FOO a b\r\n") ==
        "-ERR unknown command 'FOO', with args beginning with: 'a' 'b' \r\n");
  CHECK(ask(*c, "foo\r\n") == "-ERR unknown command 'foo', with args beginning with: \r\n");
  CHECK(ask(*c, "SET a b NX XX\r\n") == "-ERR syntax error\r\n");
  CHECK(ask(*c, "SET a b EX x\r\n") == "-ERR value is not an integer or out of range\r\n");
  CHECK(ask(*c, "SET a b EX 0\r\n") == "-ERR invalid expire time in 'set' command\r\n");
  CHECK(ask(*c, "SET s abc\r\nINCR s\r\n") ==
        "+OK\r\n-ERR value is not an integer or out of range\r\n");
  CHECK(ask(*c, "SET m 9223372036854775807\r\nINCR m\r\n") ==
        "+OK\r\n-ERR increment or decrement would overflow\r\n");
  CHECK(ask(*c, "MSET a b c\r\n") == "-ERR wrong number of arguments for 'mset' command\r\n");
  CHECK(ask(*c, "SELECT 1\r\nSELECT 0\r\n") == "-ERR DB index is out of range\r\n+OK\r\n");
  CHECK(ask(*c, "PING a b\r\n") == "-ERR wrong number of arguments for 'ping' command\r\n");
  CHECK(c->peer.close_calls == 0);
}

TEST_CASE("a protocol error is answered, then the connection closes") {
  Server server;
  auto c = server.connect();
  CHECK(ask(*c, "PING\r\n*1\r\n$x\r\nPING\r\n") ==
        "+PONG\r\n-ERR Protocol error: invalid bulk length\r\n");
  CHECK(c->peer.close_calls == 1);
  CHECK(ask(*c, "PING\r\n").empty());  // nothing more is read
}

TEST_CASE("an inline request over 64 KiB is a protocol error") {
  Server server;
  auto c = server.connect();
  c->feed(std::string(64 * 1024, 'a'));
  CHECK(c->peer.take().empty());
  c->feed("a");
  CHECK(c->peer.take() == "-ERR Protocol error: too big inline request\r\n");
  CHECK(c->peer.close_calls == 1);
}

TEST_CASE("string commands") {
  Server server;
  auto c = server.connect();
  CHECK(ask(*c, "SET k v NX\r\nSET k w NX\r\nGET k\r\n") == "+OK\r\n$-1\r\n$1\r\nv\r\n");
  CHECK(ask(*c, "SET x v XX\r\nEXISTS x k k\r\n") == "$-1\r\n:2\r\n");
  CHECK(ask(*c, "GETSET k w\r\nGETSET new 1\r\nGET k\r\n") == "$1\r\nv\r\n$-1\r\n$1\r\nw\r\n");
  CHECK(ask(*c, "APPEND k xyz\r\nSTRLEN k\r\nSTRLEN none\r\n") == ":4\r\n:4\r\n:0\r\n");
  CHECK(ask(*c, "DECR d\r\nDECRBY d 10\r\nINCRBY d -1\r\n") == ":-1\r\n:-11\r\n:-12\r\n");
  CHECK(ask(*c, "MSET a 1 b 2\r\nMGET a b c\r\n") == "+OK\r\n*3\r\n$1\r\n1\r\n$1\r\n2\r\n$-1\r\n");
  CHECK(ask(*c, "DEL a b c\r\nTYPE a\r\nTYPE k\r\n") == ":2\r\n+none\r\n+string\r\n");
  CHECK(ask(*c, "DBSIZE\r\nFLUSHDB\r\nDBSIZE\r\n") == ":3\r\n+OK\r\n:0\r\n");
  CHECK(ask(*c, "MSET user:1 a user:2 b other c\r\nKEYS user:*\r\n").find("*2\r\n") !=
        std::string::npos);
  CHECK(ask(*c, "ECHO hi\r\nPING there\r\n") == "$2\r\nhi\r\n$5\r\nthere\r\n");
}

TEST_CASE("a big binary value survives whole") {
  Server server;
  auto c = server.connect();
  std::string value(300 * 1024, '\0');
  for (std::size_t i = 0; i < value.size(); ++i) value[i] = static_cast<char>(i * 7);
  const std::string request =
      "*3\r\n$3\r\nSET\r\n$3\r\nbin\r\n$" + std::to_string(value.size()) + "\r\n" + value + "\r\n";
  for (std::size_t at = 0; at < request.size(); at += 64 * 1024) {
    c->feed(std::string_view(request).substr(at, 64 * 1024));
  }
  CHECK(c->peer.take() == "+OK\r\n");
  CHECK(ask(*c, "GET bin\r\n") == "$" + std::to_string(value.size()) + "\r\n" + value + "\r\n");
  CHECK(server.protocol.max_input() > value.size());
}

TEST_CASE("keys expire lazily on access") {
  Server server;
  auto c = server.connect();
  CHECK(ask(*c, "SET k v PX 1500\r\nPTTL k\r\nTTL k\r\n") == "+OK\r\n:1500\r\n:2\r\n");
  CHECK(ask(*c, "SET p v\r\nTTL p\r\nTTL none\r\n") == "+OK\r\n:-1\r\n:-2\r\n");
  CHECK(ask(*c, "EXPIRE p 10\r\nPERSIST p\r\nPERSIST p\r\nTTL p\r\n") ==
        ":1\r\n:1\r\n:0\r\n:-1\r\n");
  g_now += 1499;
  CHECK(ask(*c, "GET k\r\n") == "$1\r\nv\r\n");
  g_now += 1;
  CHECK(ask(*c, "GET k\r\nEXISTS k\r\n") == "$-1\r\n:0\r\n");
  CHECK(ask(*c, "SET e v EX 5\r\nSET e w\r\nTTL e\r\n") == "+OK\r\n+OK\r\n:-1\r\n");  // SET clears
  CHECK(ask(*c, "EXPIRE e -1\r\nEXISTS e\r\nEXPIRE none 5\r\n") == ":1\r\n:0\r\n:0\r\n");
}

TEST_CASE("active expiry: one session holds the sweep timer for the whole store") {
  Server server;
  auto a = server.connect();
  auto b = server.connect();
  REQUIRE(a->peer.timers.size() == 1);
  CHECK(b->peer.timers.empty());
  const auto timer = a->peer.timers.begin()->first;
  CHECK(a->peer.timers.begin()->second.period.count() > 0);

  std::string request = "*" + std::to_string(1 + 2 * 50) + "\r\n$4\r\nMSET\r\n";
  for (int i = 0; i < 50; ++i) {
    const std::string key = "k" + std::to_string(i);
    request += "$" + std::to_string(key.size()) + "\r\n" + key + "\r\n$1\r\nv\r\n";
  }
  ask(*b, request);
  for (int i = 0; i < 50; ++i) ask(*b, "PEXPIRE k" + std::to_string(i) + " 10\r\n");
  ask(*b, "SET forever v\r\n");
  CHECK(ask(*b, "DBSIZE\r\n") == ":51\r\n");
  g_now += 10;
  for (int round = 0; round < 20 && ask(*b, "DBSIZE\r\n") != ":1\r\n"; ++round) a->fire(timer);
  CHECK(ask(*b, "DBSIZE\r\n") == ":1\r\n");  // deleted without anyone touching the keys

  a->closed();  // the holder goes: the next session that is heard from takes the timer over
  CHECK(b->peer.timers.empty());
  ask(*b, "PING\r\n");
  CHECK(b->peer.timers.size() == 1);
}

TEST_CASE("maxmemory refuses writes with Redis's OOM error, reads still work") {
  RespConfig config;
  config.maxmemory = 4096;
  Server server(config);
  auto c = server.connect();
  const std::string big(5000, 'x');
  CHECK(ask(*c, "SET a " + big + "\r\n") == "+OK\r\n");
  CHECK(ask(*c, "SET b 1\r\n") == "-OOM command not allowed when used memory > 'maxmemory'.\r\n");
  CHECK(ask(*c, "INCR n\r\n").starts_with("-OOM"));
  CHECK(ask(*c, "STRLEN a\r\n") == ":5000\r\n");
  CHECK(ask(*c, "DEL a\r\nSET b 1\r\n") == ":1\r\n+OK\r\n");
}

TEST_CASE("pub/sub crosses sessions through the hub") {
  Server server;
  auto sub = server.connect();
  auto sub2 = server.connect();
  auto pub = server.connect();
  CHECK(ask(*sub, "SUBSCRIBE news sport\r\n") ==
        "*3\r\n$9\r\nsubscribe\r\n$4\r\nnews\r\n:1\r\n*3\r\n$9\r\nsubscribe\r\n$5\r\nsport\r\n:"
        "2\r\n");
  ask(*sub2, "SUBSCRIBE news\r\n");
  CHECK(ask(*pub, "PUBLISH news hello\r\n") == ":2\r\n");
  CHECK(sub->peer.take() == "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
  CHECK(sub2->peer.take() == "*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n");
  CHECK(ask(*sub, "GET x\r\n") ==
        "-ERR Can't execute 'get': only (P|S)SUBSCRIBE / (P|S)UNSUBSCRIBE / PING / QUIT / RESET "
        "are allowed in this context\r\n");
  CHECK(ask(*sub, "PING\r\n") == "*2\r\n$4\r\npong\r\n$0\r\n\r\n");
  CHECK(ask(*sub, "UNSUBSCRIBE news\r\n") == "*3\r\n$11\r\nunsubscribe\r\n$4\r\nnews\r\n:1\r\n");
  CHECK(ask(*pub, "PUBLISH news again\r\n") == ":1\r\n");
  CHECK(sub->peer.take().empty());
  sub2->closed();
  CHECK(ask(*pub, "PUBLISH news x\r\nPUBLISH sport y\r\n") == ":0\r\n:1\r\n");
  CHECK(
      ask(*sub, "UNSUBSCRIBE\r\nUNSUBSCRIBE\r\n") ==
      "*3\r\n$7\r\nmessage\r\n$5\r\nsport\r\n$1\r\ny\r\n"
      "*3\r\n$11\r\nunsubscribe\r\n$5\r\nsport\r\n:0\r\n*3\r\n$11\r\nunsubscribe\r\n$-1\r\n:0\r\n");
  CHECK(ask(*sub, "GET x\r\n") == "$-1\r\n");
}

TEST_CASE("QUIT answers OK and closes; CLIENT names stay with the connection") {
  Server server;
  auto c = server.connect();
  CHECK(ask(*c, "CLIENT GETNAME\r\nCLIENT SETNAME app\r\nCLIENT GETNAME\r\n") ==
        "$-1\r\n+OK\r\n$3\r\napp\r\n");
  CHECK(ask(*c, "CLIENT SETNAME \"a b\"\r\n") ==
        "-ERR Client names cannot contain spaces, newlines or special characters.\r\n");
  CHECK(ask(*c, "QUIT\r\nPING\r\n") == "+OK\r\n");
  CHECK(c->peer.close_calls == 1);
}

TEST_CASE("what redis-cli and redis-benchmark ask on start") {
  Server server;
  auto c = server.connect();
  CHECK(ask(*c, "COMMAND DOCS\r\n") == "*0\r\n");
  CHECK(ask(*c, "COMMAND COUNT\r\n").starts_with(":"));
  CHECK(ask(*c, "CONFIG GET save\r\nCONFIG GET appendonly\r\n") ==
        "*2\r\n$4\r\nsave\r\n$0\r\n\r\n*2\r\n$10\r\nappendonly\r\n$2\r\nno\r\n");
  const std::string info = ask(*c, "SET a 1\r\nINFO\r\n");
  CHECK(info.find("# Server\r\nredis_version:") != std::string::npos);
  CHECK(info.find("# Keyspace\r\ndb0:keys=1,expires=0") != std::string::npos);
}

TEST_CASE("configuration from --args, and the words for a refused connection") {
  using reactor::protocols::parse_resp_config;
  RespConfig config;
  std::string error;
  CHECK(parse_resp_config("maxmemory=10mb,proto-max-bulk-len=1048576", config, error));
  CHECK(config.maxmemory == 10u << 20);
  CHECK(config.limits.max_bulk == 1u << 20);
  CHECK_FALSE(parse_resp_config("maxmemory=lots", config, error));
  CHECK(error == "maxmemory=lots: expected a number");
  CHECK_FALSE(parse_resp_config("colour=blue", config, error));
  CHECK(error.starts_with("unknown option 'colour'"));

  RespProtocol protocol;
  CHECK(protocol.last_words(reactor::Errc::too_many_connections) ==
        "-ERR max number of clients reached\r\n");
  reactor::protocols::Registry registry;
  const auto* entry = registry.find("resp");
  REQUIRE(entry != nullptr);
  CHECK(entry->info.shares_memory);
  CHECK(entry->info.uses_hub);
}
