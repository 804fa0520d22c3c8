// The HTTP protocol's sans-IO parts: the request parser (split at every offset), target
// decoding (the security boundary), dates and ranges, and HttpSession on a FakeConnection over a
// real temporary document root.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "support/fake_peer.hpp"
#include "support/http_client.hpp"
#include "support/http_root.hpp"
#include "protocols/http/files.hpp"
#include "protocols/http/parser.hpp"
#include "protocols/http/response.hpp"
#include "protocols/http/session.hpp"
#include "protocols/http/target.hpp"
#include "protocols/registry.hpp"
#include "reactor/local_hub.hpp"

using namespace reactor::http;
using test::FakeConnection;
using test::HttpResponse;
using test::parse_responses;

namespace {

ParseResult parse(std::string_view text, Request& request) {
  return parse_request(text, request);
}

int error_of(std::string_view text) {
  Request request;
  const ParseResult r = parse(text, request);
  return r.status == ParseStatus::error ? r.error_status : 0;
}

constexpr std::string_view kSimple =
    "GET /index.html?x=1 HTTP/1.1\r\nHost: example\r\nConnection: keep-alive, Upgrade\r\n"
    "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\nRange: bytes=0-9\r\n\r\n";

}  // namespace

TEST_CASE("a request head parses into method, target, version and the headers acted on") {
  Request request;
  const ParseResult r = parse(kSimple, request);
  REQUIRE(r.status == ParseStatus::complete);
  CHECK(r.consumed == kSimple.size());
  CHECK(request.method == "GET");
  CHECK(request.target == "/index.html?x=1");
  CHECK(request.minor_version == 1);
  CHECK(request.host == "example");
  CHECK(request.connection_keep_alive);
  CHECK_FALSE(request.connection_close);
  CHECK(request.if_modified_since == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(request.range == "bytes=0-9");
  CHECK(request.header_fields == 4);
}

TEST_CASE("every prefix of a request head is incomplete, and the whole is complete") {
  const std::string two = std::string(kSimple) + "HEAD / HTTP/1.0\r\n\r\n";
  for (std::size_t cut = 0; cut < kSimple.size(); ++cut) {
    Request request;
    const ParseResult r = parse(kSimple.substr(0, cut), request);
    CHECK_MESSAGE(r.status == ParseStatus::incomplete, "cut at " << cut);
    // Resuming with `scanned` gives the same answer as scanning from the start.
    Request resumed;
    const ParseResult whole = parse_request(kSimple, resumed, cut);
    CHECK(whole.status == ParseStatus::complete);
    CHECK(whole.consumed == kSimple.size());
    CHECK(resumed.range == "bytes=0-9");
  }
  Request request;
  const ParseResult first = parse(two, request);
  REQUIRE(first.status == ParseStatus::complete);
  CHECK(first.consumed == kSimple.size());
  const ParseResult second = parse(std::string_view(two).substr(first.consumed), request);
  REQUIRE(second.status == ParseStatus::complete);
  CHECK(request.method == "HEAD");
  CHECK(request.minor_version == 0);
}

TEST_CASE("bare LF line ends and leading blank lines are accepted") {
  Request request;
  const ParseResult r = parse("\r\n\nGET / HTTP/1.1\nHost: a\n\n", request);
  REQUIRE(r.status == ParseStatus::complete);
  CHECK(request.target == "/");
  CHECK(request.host == "a");
}

TEST_CASE("malformed request lines and header fields are 400") {
  CHECK(error_of("GET /\r\n\r\n") == 400);
  CHECK(error_of("GET  / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(error_of("GET / HTTP/1.1 x\r\nHost: a\r\n\r\n") == 400);
  CHECK(error_of("G(T / HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(error_of("GET / HTTX/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(error_of("GET / HTTP/11\r\nHost: a\r\n\r\n") == 400);
  CHECK(error_of("GET /\x01 HTTP/1.1\r\nHost: a\r\n\r\n") == 400);
  CHECK(error_of("GET / HTTP/1.1\r\nHost : a\r\n\r\n") == 400);
  CHECK(error_of("GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n") == 400);
  CHECK(error_of("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n") == 400);
  CHECK(error_of("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n") == 400);
  CHECK(error_of("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1x\r\n\r\n") == 400);
  CHECK(error_of("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n") ==
        400);
  CHECK(error_of("GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n") == 400);
  CHECK(error_of("GET / HTTP/1.1\r\n\r\n") == 400);                        // 1.1 needs Host
  CHECK(error_of("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == 400);  // only one
  CHECK(error_of("GET / HTTP/1.0\r\n\r\n") == 0);
}

TEST_CASE("versions other than HTTP/1.x are 505; later 1.x minors are served") {
  CHECK(error_of("GET / HTTP/2.0\r\nHost: a\r\n\r\n") == 505);
  CHECK(error_of("GET / HTTP/0.9\r\nHost: a\r\n\r\n") == 505);
  Request request;
  REQUIRE(parse("GET / HTTP/1.2\r\nHost: a\r\n\r\n", request).status == ParseStatus::complete);
  CHECK(request.minor_version == 2);
}

TEST_CASE("a request line over 8 KiB is 414, even before it ends") {
  const std::string long_target = "GET /" + std::string(kMaxRequestLine, 'a');
  CHECK(error_of(long_target) == 414);
  CHECK(error_of(long_target + " HTTP/1.1\r\nHost: a\r\n\r\n") == 414);
  const std::string fits = "GET /" + std::string(kMaxRequestLine - 20, 'a') + " HTTP/1.1\r\n";
  Request request;
  CHECK(parse(fits, request).status == ParseStatus::incomplete);
}

TEST_CASE("headers over 32 KiB or over 100 fields are 431, even before they end") {
  const std::string start = "GET / HTTP/1.1\r\nHost: a\r\n";
  const std::string big = start + "X: " + std::string(kMaxHeaderBytes, 'b') + "\r\n";
  CHECK(error_of(big) == 431);
  CHECK(error_of(big + "\r\n") == 431);
  std::string many = start;
  for (std::size_t i = 0; i < kMaxHeaderFields; ++i) many += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(error_of(many + "\r\n") == 431);
  std::string hundred = start;
  for (std::size_t i = 1; i < kMaxHeaderFields; ++i)
    hundred += "X-" + std::to_string(i) + ": v\r\n";
  CHECK(error_of(hundred + "\r\n") == 0);
}

TEST_CASE("targets are decoded; dot-dot, NUL and backslash are refused however encoded") {
  CHECK(decode_target("/a%20b/c.html?q=1").path == "/a b/c.html");
  CHECK(decode_target("/a%20b/c.html?q=1").query == "?q=1");
  CHECK(decode_target("/a%20b/c.html?q=1").raw == "/a%20b/c.html");
  CHECK(decode_target("/a/./b//c/").path == "/a/b/c/");
  CHECK(decode_target("/").path == "/");
  CHECK(decode_target("http://example.com/x").path == "/x");
  CHECK(decode_target("http://example.com").path == "/");
  for (const char* bad :
       {"/..", "/../etc/passwd", "/a/../../b", "/%2e%2e/etc/passwd", "/%2E%2E%2fetc", "/a/%2e%2e",
        "/a%00.html", "/a\\..\\b", "/a%5c..%5cb", "/.%2e/x"}) {
    CHECK_MESSAGE(decode_target(bad).status == 404, bad);
  }
  CHECK(decode_target("/%zz").status == 400);
  CHECK(decode_target("/%2").status == 400);
  CHECK(decode_target("*").status == 400);
  CHECK(decode_target("a/b").status == 400);
}

TEST_CASE("HTTP dates format as IMF-fixdate and parse in all three formats") {
  CHECK(format_http_date(784111777) == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT") == 784111777);
  CHECK(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT") == 784111777);
  CHECK(parse_http_date("Sun Nov  6 08:49:37 1994") == 784111777);
  CHECK_FALSE(parse_http_date("yesterday").has_value());
  CHECK_FALSE(parse_http_date("Sun, 06 Nov 1994 08:49:37 UTC").has_value());
  CHECK_FALSE(parse_http_date("Sun, 36 Nov 1994 08:49:37 GMT").has_value());
}

TEST_CASE("single byte ranges: first-last, first-, suffix; others are ignored or 416") {
  ByteRange r;
  CHECK(parse_range("bytes=0-9", 100, r) == RangeKind::satisfiable);
  CHECK((r.first == 0 && r.last == 9));
  CHECK(parse_range("bytes=90-200", 100, r) == RangeKind::satisfiable);
  CHECK((r.first == 90 && r.last == 99));
  CHECK(parse_range("bytes=95-", 100, r) == RangeKind::satisfiable);
  CHECK((r.first == 95 && r.last == 99));
  CHECK(parse_range("bytes=-10", 100, r) == RangeKind::satisfiable);
  CHECK((r.first == 90 && r.last == 99));
  CHECK(parse_range("bytes=-1000", 100, r) == RangeKind::satisfiable);
  CHECK((r.first == 0 && r.last == 99));
  CHECK(parse_range("bytes=100-", 100, r) == RangeKind::unsatisfiable);
  CHECK(parse_range("bytes=-0", 100, r) == RangeKind::unsatisfiable);
  CHECK(parse_range("bytes=0-1,5-6", 100, r) == RangeKind::ignore);
  CHECK(parse_range("items=0-1", 100, r) == RangeKind::ignore);
  CHECK(parse_range("bytes=5-1", 100, r) == RangeKind::ignore);
  CHECK(parse_range("bytes=x-1", 100, r) == RangeKind::ignore);
}

TEST_CASE("Content-Type follows the extension") {
  CHECK(content_type_for("/a/index.HTML") == "text/html; charset=utf-8");
  CHECK(content_type_for("/s.css") == "text/css; charset=utf-8");
  CHECK(content_type_for("/i.png") == "image/png");
  CHECK(content_type_for("/noext") == "application/octet-stream");
  CHECK(content_type_for("/dir.png/noext") == "application/octet-stream");
}

TEST_CASE("configuration: root is required and must be a directory; timeouts in seconds") {
  test::TempRoot root;
  HttpConfig config;
  std::string error;
  CHECK(parse_http_config("root=" + root.root() + ",header-timeout=2.5,keepalive-timeout=1", config,
                          error));
  CHECK(config.header_timeout == std::chrono::milliseconds(2500));
  CHECK(config.keepalive_timeout == std::chrono::milliseconds(1000));
  CHECK_FALSE(parse_http_config("", config, error));
  CHECK(error == "http: root=DIR is required (--args root=DIR)");
  CHECK_FALSE(parse_http_config("root=/x,header-timeout=0", config, error));
  CHECK_FALSE(parse_http_config("root=/x,keepalive-timeout=abc", config, error));
  CHECK_FALSE(parse_http_config("root=/x,colour=red", config, error));
  CHECK(make_http("root=" + root.root() + "/missing", error) == nullptr);
  CHECK(error.find("No such file or directory") != std::string::npos);
  root.write("file.txt", "x");
  CHECK(make_http("root=" + root.root() + "/file.txt", error) == nullptr);
  CHECK(error.find("Not a directory") != std::string::npos);

  reactor::protocols::Registry registry;
  const auto* entry = registry.find("http");
  REQUIRE(entry != nullptr);
  CHECK(entry->info.transports == (reactor::kTcp | reactor::kUnixStream));
  CHECK(registry.create("http", "root=" + root.root(), error) != nullptr);
}

namespace {

// A session over a temporary root holding a few files.
struct Served {
  Served() {
    root.write("index.html", "<html>home</html>", kMtime);
    root.write("hello.txt", "hello, world\n", kMtime);
    root.write("style.css", "body{}", kMtime);
    root.write("empty.bin", "", kMtime);
    root.write("docs/index.html", "<p>docs</p>", kMtime);
    root.mkdir("nolist");
    root.write("nolist/a.txt", "a");
    write_outside("secret.txt", "top secret");
    std::string error;
    protocol = make_http("root=" + root.root(), error);
    REQUIRE_MESSAGE(protocol != nullptr, error);
    connection = std::make_unique<FakeConnection>(*protocol, hub);
  }
  void write_outside(std::string_view name, std::string_view content) {
    test::TempRoot::write_at(root.outside() / name, content);
  }
  std::vector<HttpResponse> responses(const std::vector<std::size_t>& no_body = {}) {
    std::string rest;
    auto out = parse_responses(connection->peer.take(), no_body, &rest);
    CHECK_MESSAGE(rest.empty(), "unparsed output: " << rest);
    return out;
  }
  HttpResponse get(std::string_view target, std::string_view extra = "") {
    connection->feed("GET " + std::string(target) + " HTTP/1.1\r\nHost: t\r\n" +
                     std::string(extra) + "\r\n");
    auto out = responses();
    REQUIRE(out.size() == 1);
    return out.front();
  }

  static constexpr std::int64_t kMtime = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
  test::TempRoot root;
  reactor::LocalHub hub;
  std::unique_ptr<reactor::Protocol> protocol;
  std::unique_ptr<FakeConnection> connection;
};

// Responses without their Date headers (a test may cross a second boundary).
std::string without_dates(std::string text) {
  for (std::size_t at; (at = text.find("Date: ")) != std::string::npos;) {
    text.erase(at, text.find("\r\n", at) + 2 - at);
  }
  return text;
}

}  // namespace

TEST_CASE("GET serves a file with length, type, dates and keep-alive") {
  Served s;
  const HttpResponse r = s.get("/hello.txt");
  CHECK(r.status == 200);
  CHECK(r.body == "hello, world\n");
  CHECK(r.header("content-length") == "13");
  CHECK(r.header("content-type") == "text/plain; charset=utf-8");
  CHECK(r.header("last-modified") == "Sun, 06 Nov 1994 08:49:37 GMT");
  CHECK(r.header("date").size() == 29);
  CHECK(r.header("connection") == "keep-alive");
  CHECK(r.header("accept-ranges") == "bytes");
  CHECK(s.connection->peer.close_calls == 0);
  CHECK(s.connection->peer.files_sent == 1);
}

TEST_CASE("HEAD sends the same head and no body") {
  Served s;
  s.connection->feed("HEAD /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
  const auto out = s.responses({0});
  REQUIRE(out.size() == 1);
  CHECK(out[0].status == 200);
  CHECK(out[0].header("content-length") == "13");
  CHECK(out[0].body.empty());
  CHECK(s.connection->peer.files_sent == 0);
}

TEST_CASE("an empty file is 200 with Content-Length 0 and no send_file") {
  Served s;
  const HttpResponse r = s.get("/empty.bin");
  CHECK(r.status == 200);
  CHECK(r.header("content-length") == "0");
  CHECK(s.connection->peer.files_sent == 0);
}

TEST_CASE("keep-alive: 1.1 by default, 1.0 only when asked, Connection: close honoured") {
  Served s;
  SUBCASE("HTTP/1.1 stays open") {
    s.get("/hello.txt");
    CHECK(s.connection->peer.close_calls == 0);
  }
  SUBCASE("HTTP/1.1 with Connection: close closes after the response") {
    const HttpResponse r = s.get("/hello.txt", "Connection: close\r\n");
    CHECK(r.header("connection") == "close");
    CHECK(s.connection->peer.close_calls == 1);
  }
  SUBCASE("HTTP/1.0 closes") {
    s.connection->feed("GET /hello.txt HTTP/1.0\r\n\r\n");
    const auto out = s.responses();
    REQUIRE(out.size() == 1);
    CHECK(out[0].header("connection") == "close");
    CHECK(s.connection->peer.close_calls == 1);
  }
  SUBCASE("HTTP/1.0 with Connection: keep-alive stays open") {
    s.connection->feed("GET /hello.txt HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    const auto out = s.responses();
    REQUIRE(out.size() == 1);
    CHECK(out[0].header("connection") == "keep-alive");
    CHECK(s.connection->peer.close_calls == 0);
  }
}

TEST_CASE("pipelined requests are answered in order, however the bytes are split") {
  const std::string requests =
      "GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n"
      "HEAD /style.css HTTP/1.1\r\nHost: t\r\n\r\n"
      "GET /missing HTTP/1.1\r\nHost: t\r\n\r\n"
      "GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
  std::string expected;
  {
    Served s;
    s.connection->feed(requests);
    expected = without_dates(s.connection->peer.take());
    const auto out = parse_responses(expected, {1});
    REQUIRE(out.size() == 4);
    CHECK(out[0].body == "hello, world\n");
    CHECK(out[1].status == 200);
    CHECK(out[1].body.empty());
    CHECK(out[2].status == 404);
    CHECK(out[3].body == "body{}");
    CHECK(s.connection->peer.close_calls == 1);
  }
  for (std::size_t cut = 1; cut < requests.size(); ++cut) {
    Served s;
    s.connection->feed(requests.substr(0, cut));
    s.connection->feed(requests.substr(cut));
    CHECK_MESSAGE(without_dates(s.connection->peer.take()) == expected, "cut at " << cut);
  }
  Served s;
  s.connection->feed_bytewise(requests);
  CHECK(without_dates(s.connection->peer.take()) == expected);
}

TEST_CASE("If-Modified-Since: 304 when not modified since, 200 when modified") {
  Served s;
  HttpResponse r = s.get("/hello.txt", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
  CHECK(r.status == 304);
  CHECK(r.body.empty());
  CHECK(r.header("last-modified") == "Sun, 06 Nov 1994 08:49:37 GMT");
  r = s.get("/hello.txt", "If-Modified-Since: Sat, 05 Nov 1994 08:49:37 GMT\r\n");
  CHECK(r.status == 200);
  r = s.get("/hello.txt", "If-Modified-Since: garbage\r\n");
  CHECK(r.status == 200);
}

TEST_CASE("Range: 206 with Content-Range; past the end 416; If-Range mismatch sends all") {
  Served s;
  HttpResponse r = s.get("/hello.txt", "Range: bytes=7-11\r\n");
  CHECK(r.status == 206);
  CHECK(r.body == "world");
  CHECK(r.header("content-range") == "bytes 7-11/13");
  r = s.get("/hello.txt", "Range: bytes=-6\r\n");
  CHECK(r.status == 206);
  CHECK(r.body == "world\n");
  r = s.get("/hello.txt", "Range: bytes=13-\r\n");
  CHECK(r.status == 416);
  CHECK(r.header("content-range") == "bytes */13");
  CHECK(s.connection->peer.close_calls == 0);
  r = s.get("/hello.txt", "Range: bytes=0-4\r\nIf-Range: Mon, 07 Nov 1994 08:49:37 GMT\r\n");
  CHECK(r.status == 200);
  CHECK(r.body == "hello, world\n");
  r = s.get("/hello.txt", "Range: bytes=0-4\r\nIf-Range: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
  CHECK(r.status == 206);
  CHECK(r.body == "hello");
}

TEST_CASE("directories: / and /dir/ serve index.html, /dir redirects, no listings") {
  Served s;
  HttpResponse r = s.get("/");
  CHECK(r.status == 200);
  CHECK(r.body == "<html>home</html>");
  CHECK(r.header("content-type") == "text/html; charset=utf-8");
  r = s.get("/docs/");
  CHECK(r.body == "<p>docs</p>");
  r = s.get("/docs?x=1");
  CHECK(r.status == 301);
  CHECK(r.header("location") == "/docs/?x=1");
  r = s.get("/nolist/");
  CHECK(r.status == 403);
  CHECK(s.connection->peer.close_calls == 0);
}

TEST_CASE("nothing outside the root is served: dot-dot, encodings, NUL, backslash, symlinks") {
  Served s;
  s.root.symlink((s.root.outside() / "secret.txt").string(), "escape.txt");
  s.root.symlink("../secret.txt", "relative-escape.txt");
  s.root.symlink(s.root.outside().string(), "escape-dir");
  s.root.symlink("hello.txt", "inside.txt");
  for (const char* target :
       {"/../secret.txt", "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt", "/docs/../../secret.txt",
        "/secret.txt%00.html", "/..%5csecret.txt", "/..\\secret.txt", "/escape.txt",
        "/relative-escape.txt", "/escape-dir/secret.txt", "/escape-dir/root/hello.txt"}) {
    const HttpResponse r = s.get(target);
    CHECK_MESSAGE((r.status == 404 || r.status == 403), target << " got " << r.status);
    CHECK_MESSAGE(r.body.find("secret") == std::string::npos, target);
  }
  CHECK(s.get("/inside.txt").body == "hello, world\n");
}

TEST_CASE("both resolvers (openat2 and the realpath fallback) keep symlinks inside the root") {
  test::TempRoot root;
  root.write("a.txt", "inside");
  root.write("sub/b.txt", "deeper");
  test::TempRoot::write_at(root.outside() / "secret.txt", "secret");
  root.symlink((root.outside() / "secret.txt").string(), "abs-out");
  root.symlink("../secret.txt", "rel-out");
  root.symlink("sub/../a.txt", "rel-in");
  root.symlink(root.outside().string(), "dir-out");
  root.symlink("sub", "dir-in");
  for (const auto resolve : {RootDirectory::Resolve::openat2, RootDirectory::Resolve::realpath}) {
    std::string error;
    const auto files = RootDirectory::open_root(root.root(), error, resolve);
    REQUIRE_MESSAGE(files != nullptr, error);
    for (const char* path : {"/abs-out", "/rel-out", "/dir-out/secret.txt", "/missing"}) {
      const OpenedFile f = files->open(path);
      CHECK_MESSAGE(f.error != 0, path);
      CHECK_FALSE(f.file);
    }
    CHECK(files->open("/rel-in").regular);
    CHECK(files->open("/dir-in/b.txt").size == 6);
    CHECK(files->open("/sub").directory);
    CHECK(files->open("/").directory);
  }
}

TEST_CASE("other methods are 405 with Allow; bodies are refused with 413 or 411 and close") {
  Served s;
  SUBCASE("405 keeps the connection") {
    s.connection->feed("DELETE /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
    const auto out = s.responses();
    REQUIRE(out.size() == 1);
    CHECK(out[0].status == 405);
    CHECK(out[0].header("allow") == "GET, HEAD");
    CHECK(s.connection->peer.close_calls == 0);
  }
  SUBCASE("405 with a body closes") {
    s.connection->feed("POST / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    const auto out = s.responses();
    REQUIRE(out.size() == 1);
    CHECK(out[0].status == 405);
    CHECK(s.connection->peer.close_calls == 1);
  }
  SUBCASE("GET with Content-Length > 0 is 413") {
    s.connection->feed("GET / HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n\r\nabc");
    const auto out = s.responses();
    REQUIRE(out.size() == 1);
    CHECK(out[0].status == 413);
    CHECK(s.connection->peer.close_calls == 1);
  }
  SUBCASE("GET with Transfer-Encoding is 411") {
    s.connection->feed("GET / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
    const auto out = s.responses();
    REQUIRE(out.size() == 1);
    CHECK(out[0].status == 411);
    CHECK(s.connection->peer.close_calls == 1);
  }
  SUBCASE("Content-Length: 0 is fine") {
    CHECK(s.get("/hello.txt", "Content-Length: 0\r\n").status == 200);
  }
}

TEST_CASE("bad input gets its status and the connection closes, nothing after it is answered") {
  struct Case {
    std::string input;
    int status;
  };
  const std::vector<Case> cases = {
      {"BAD\r\n\r\nGET / HTTP/1.1\r\nHost: t\r\n\r\n", 400},
      {"GET / HTTP/3.0\r\nHost: t\r\n\r\n", 505},
      {"GET /" + std::string(9000, 'a'), 414},
      {"GET / HTTP/1.1\r\nHost: t\r\nX: " + std::string(33000, 'b'), 431},
      {"GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n", 400},
  };
  for (const Case& c : cases) {
    Served s;
    CHECK(s.connection->feed(c.input) == c.input.size());
    const auto out = s.responses();
    REQUIRE(out.size() == 1);
    CHECK(out[0].status == c.status);
    CHECK(out[0].header("connection") == "close");
    CHECK(s.connection->peer.close_calls == 1);
    s.connection->feed("GET / HTTP/1.1\r\nHost: t\r\n\r\n");
    CHECK(s.connection->peer.take().empty());
  }
}

TEST_CASE("header timeout: an unfinished head gets 408 and the connection closes") {
  Served s;
  auto& peer = s.connection->peer;
  REQUIRE(peer.timers.size() == 1);  // armed at open
  CHECK(peer.timers.begin()->second.delay == std::chrono::milliseconds(10'000));
  s.connection->feed("GET / HTTP/1.1\r\nHost: t\r\n");
  REQUIRE(peer.timers.size() == 1);
  const reactor::TimerId id = peer.timers.begin()->first;
  s.connection->feed("X-Slow: 1\r\n");
  REQUIRE(peer.timers.size() == 1);
  CHECK(peer.timers.begin()->first == id);  // more bytes do not extend the deadline
  CHECK(s.connection->fire(id));
  const auto out = s.responses();
  REQUIRE(out.size() == 1);
  CHECK(out[0].status == 408);
  CHECK(peer.close_calls == 1);
  CHECK(peer.timers.empty());
}

TEST_CASE("a connection that never sends is closed at the header timeout without a response") {
  Served s;
  auto& peer = s.connection->peer;
  REQUIRE(peer.timers.size() == 1);
  CHECK(s.connection->fire(peer.timers.begin()->first));
  CHECK(peer.take().empty());
  CHECK(peer.close_calls == 1);
}

TEST_CASE("keep-alive timeout: an idle connection closes; not while a response is still queued") {
  Served s;
  auto& peer = s.connection->peer;
  s.get("/hello.txt");
  REQUIRE(peer.timers.size() == 1);
  CHECK(peer.timers.begin()->second.delay == std::chrono::milliseconds(5'000));
  peer.buffered_bytes = 100;
  CHECK(s.connection->fire(peer.timers.begin()->first));
  CHECK(peer.close_calls == 0);
  REQUIRE(peer.timers.size() == 1);  // re-armed
  peer.buffered_bytes = 0;
  CHECK(s.connection->fire(peer.timers.begin()->first));
  CHECK(peer.close_calls == 1);
  CHECK(peer.take().empty());
}

TEST_CASE("a new request's first bytes switch from the keep-alive to the header deadline") {
  Served s;
  auto& peer = s.connection->peer;
  s.get("/hello.txt");
  s.connection->feed("GET /");
  REQUIRE(peer.timers.size() == 1);
  CHECK(peer.timers.begin()->second.delay == std::chrono::milliseconds(10'000));
}

TEST_CASE("pipelining pauses after a burst and resumes on the poll timer once output drains") {
  Served s;
  auto& peer = s.connection->peer;
  std::string many;
  const std::size_t total = HttpSession::kBurst * 2 + 5;
  for (std::size_t i = 0; i < total; ++i) many += "GET /style.css HTTP/1.1\r\nHost: t\r\n\r\n";
  CHECK(s.connection->feed(many) == many.size());  // the session holds the rest itself
  CHECK(s.responses().size() == HttpSession::kBurst);
  REQUIRE(peer.timers.size() == 1);
  const reactor::TimerId resume = peer.timers.begin()->first;
  CHECK(peer.timers.begin()->second.period == HttpSession::kResumePoll);
  peer.buffered_bytes = HttpSession::kLowWater + 1;  // not drained yet: nothing happens
  CHECK(s.connection->fire(resume));
  CHECK(peer.take().empty());
  // New bytes while paused are queued behind the held ones.
  s.connection->feed("GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK(peer.take().empty());
  peer.buffered_bytes = 0;
  CHECK(s.connection->fire(resume));
  CHECK(s.responses().size() == HttpSession::kBurst);
  REQUIRE(peer.timers.size() == 1);
  CHECK(s.connection->fire(peer.timers.begin()->first));
  const auto last = s.responses();
  REQUIRE(last.size() == 6);
  CHECK(last.back().body == "hello, world\n");
  REQUIRE(peer.timers.size() == 1);
  CHECK(peer.timers.begin()->second.delay == std::chrono::milliseconds(5'000));  // idle again
}

TEST_CASE("a peer holding over 1 MiB of output pauses the session too") {
  Served s;
  auto& peer = s.connection->peer;
  peer.buffered_bytes = HttpSession::kHighWater + 1;
  s.connection->feed("GET /hello.txt HTTP/1.1\r\nHost: t\r\n\r\n");
  CHECK(peer.take().empty());
  s.connection->eof();  // the client half-closes: the held request is still answered
  CHECK(peer.close_calls == 0);
  peer.buffered_bytes = 0;
  REQUIRE(peer.timers.size() == 1);
  CHECK(s.connection->fire(peer.timers.begin()->first));
  CHECK(s.responses().size() == 1);
  CHECK(peer.close_calls == 1);
}

TEST_CASE("last words are a 503 with Content-Length 0 and Connection: close") {
  Served s;
  CHECK(s.protocol->last_words(reactor::Errc::too_many_connections) ==
        "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
}
