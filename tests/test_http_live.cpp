// The http protocol in the real reactor-server, against the real clients: curl (keep-alive reuse,
// HEAD, ranges, If-Modified-Since), wrk, ab, Python's http.client/urllib and a raw pipelining
// socket, and headless Chromium loading a page with its CSS and image. Each test starts its own
// server on 127.0.0.1 port 0 over a temporary root.
#include <doctest/doctest.h>
#include <sys/socket.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/http_client.hpp"
#include "support/http_root.hpp"
#include "support/process.hpp"
#include "reactor/socket.hpp"
#include "support/support.hpp"

using namespace std::chrono_literals;

namespace {

const std::string kServer = REACTOR_SERVER_PATH;

bool on_path(const std::string& program) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    if (::access((std::filesystem::path(dir) / program).c_str(), X_OK) == 0) return true;
  }
  return false;
}

// A server over a fresh root with a small site in it.
struct Site {
  explicit Site(std::vector<std::string> extra_args = {},
                std::vector<std::string> server_args = {}) {
    root.write("index.html",
               "<!doctype html><html><head><link rel=stylesheet href=\"/style.css\"></head>"
               "<body><h1 id=title>reactor http</h1><img id=pic src=\"/img/green.png\" "
               "width=64 height=64></body></html>",
               kMtime);
    root.write("style.css", "body { background: #ff0000; margin: 0; } h1 { color: #0000ff; }",
               kMtime);
    root.write("img/green.png", green_png(64, 64), kMtime);
    std::string letters;
    for (int i = 0; i < 4096; ++i) letters += static_cast<char>('a' + i % 26);
    root.write("letters.txt", letters, kMtime);
    std::vector<std::string> args = {"--protocol",        "http",   "--listen",
                                     "tcp://127.0.0.1:0", "--args", "root=" + root.root()};
    if (!extra_args.empty()) args.back() += "," + extra_args.front();
    args.insert(args.end(), server_args.begin(), server_args.end());
    auto started = test::start_server(kServer, args);
    REQUIRE(started.has_value());
    server.emplace(std::move(*started));
    port = std::to_string(server->addresses.at(0).port());
    base = "http://127.0.0.1:" + port;
  }

  // A solid green RGB PNG, made here so no binary sits in the tree.
  static std::string green_png(int width, int height) {
    auto chunk = [](std::string& out, const char* type, const std::string& data) {
      auto be32 = [&out](std::uint32_t v) {
        for (int s = 24; s >= 0; s -= 8) out += static_cast<char>((v >> s) & 0xff);
      };
      be32(static_cast<std::uint32_t>(data.size()));
      const std::string body = std::string(type, 4) + data;
      out += body;
      be32(static_cast<std::uint32_t>(
          ::crc32(0, reinterpret_cast<const Bytef*>(body.data()), static_cast<uInt>(body.size()))));
    };
    std::string ihdr;
    for (const std::uint32_t v :
         {static_cast<std::uint32_t>(width), static_cast<std::uint32_t>(height)}) {
      for (int s = 24; s >= 0; s -= 8) ihdr += static_cast<char>((v >> s) & 0xff);
    }
    ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, no interlace
    std::string raw;
    for (int y = 0; y < height; ++y) {
      raw += '\0';
      for (int x = 0; x < width; ++x) raw += std::string("\x00\xff\x00", 3);
    }
    uLongf size = ::compressBound(static_cast<uLong>(raw.size()));
    std::string packed(size, '\0');
    REQUIRE(::compress(reinterpret_cast<Bytef*>(packed.data()), &size,
                       reinterpret_cast<const Bytef*>(raw.data()),
                       static_cast<uLong>(raw.size())) == Z_OK);
    packed.resize(size);
    std::string png("\x89PNG\r\n\x1a\n", 8);
    chunk(png, "IHDR", ihdr);
    chunk(png, "IDAT", packed);
    chunk(png, "IEND", "");
    return png;
  }

  static constexpr std::int64_t kMtime = 784111777;  // Sun, 06 Nov 1994 08:49:37 GMT
  test::TempRoot root;
  std::optional<test::ServerProcess> server;
  std::string port;
  std::string base;
};

test::Process run(const std::string& program, const std::vector<std::string>& args,
                  std::chrono::milliseconds limit = 30s) {
  return test::run_to_exit(program, args, limit);
}

// Runs a Python 3 script (written to the root's parent) with `args`.
test::Process python(Site& site, const std::string& script, std::vector<std::string> args) {
  const std::string path = (site.root.outside() / "client.py").string();
  std::ofstream(path) << script;
  args.insert(args.begin(), path);
  return run("/usr/bin/env", [&] {
    std::vector<std::string> a = {"python3"};
    a.insert(a.end(), args.begin(), args.end());
    return a;
  }());
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST_CASE("curl: two URLs in one command reuse one keep-alive connection") {
  Site site;
  const std::string out1 = (site.root.outside() / "one").string();
  const std::string out2 = (site.root.outside() / "two").string();
  auto p = run("/usr/bin/curl", {"-sS", "-o", out1, site.base + "/letters.txt", "-o", out2,
                                 site.base + "/style.css", "-w", "%{http_code} %{num_connects}\n"});
  CHECK_MESSAGE(p.exit_code() == 0, p.err());
  CHECK(p.out() == "200 1\n200 0\n");
  CHECK(read_file(out1).size() == 4096);
  CHECK(read_file(out1).substr(0, 5) == "abcde");
  CHECK(read_file(out2).find("background") != std::string::npos);
  const auto summary = test::stop_server(*site.server);
  CHECK(summary.at("connections") == 1);
}

TEST_CASE("every model serves files (keep-alive reuse, a range, a 404) and times out slow heads") {
  for (const std::string_view model : test::kServerModels) {
    SUBCASE(std::string(model).c_str()) {
      std::vector<std::string> server_args = {"--model", std::string(model)};
      if (model == "reuseport") server_args.insert(server_args.end(), {"--workers", "2"});
      Site site({"header-timeout=1"}, server_args);
      // --next starts a new set of options; curl keeps its connection across them.
      const std::string format = "%{http_code} %{num_connects} %{size_download}\\n";
      auto p = run("/usr/bin/curl", {"-sS",
                                     "-o",
                                     "/dev/null",
                                     "-w",
                                     format,
                                     site.base + "/letters.txt",
                                     "--next",
                                     "-sS",
                                     "-o",
                                     "/dev/null",
                                     "-r",
                                     "0-2",
                                     "-w",
                                     format,
                                     site.base + "/letters.txt",
                                     "--next",
                                     "-sS",
                                     "-o",
                                     "/dev/null",
                                     "-w",
                                     format,
                                     site.base + "/missing"});
      CHECK_MESSAGE(p.exit_code() == 0, p.err());
      CHECK(p.out() == "200 1 4096\n206 0 3\n404 0 14\n");
      // Session timers work under this model too: an unfinished head gets 408.
      auto fd = test::connect_to(site.server->addresses.at(0));
      REQUIRE(reactor::set_receive_timeout(fd.get(), 20s) == std::error_code{});
      test::send_all(fd.get(), "GET / HTTP/1.1\r\nHost: x\r\n");
      const auto out = test::parse_responses(test::read_to_eof(fd.get()));
      REQUIRE(out.size() == 1);
      CHECK(out[0].status == 408);
    }
  }
}

TEST_CASE("curl: HEAD with -I, a range with -r, If-Modified-Since with -z") {
  Site site;
  auto head = run("/usr/bin/curl", {"-sS", "-I", site.base + "/letters.txt"});
  CHECK_MESSAGE(head.exit_code() == 0, head.err());
  const auto responses = test::parse_responses(head.out(), {0});
  REQUIRE(responses.size() == 1);
  CHECK(responses[0].status == 200);
  CHECK(responses[0].header("content-length") == "4096");
  CHECK(responses[0].header("content-type") == "text/plain; charset=utf-8");
  CHECK(responses[0].header("last-modified") == "Sun, 06 Nov 1994 08:49:37 GMT");

  auto range = run("/usr/bin/curl",
                   {"-sS", "-r", "26-51", "-w", " %{http_code}", site.base + "/letters.txt"});
  CHECK(range.out() == "abcdefghijklmnopqrstuvwxyz 206");
  auto past = run("/usr/bin/curl", {"-sS", "-o", "/dev/null", "-r", "5000-", "-w", "%{http_code}",
                                    site.base + "/letters.txt"});
  CHECK(past.out() == "416");

  auto same = run("/usr/bin/curl", {"-sS", "-z", "Sun, 06 Nov 1994 08:49:37 GMT", "-w",
                                    "%{http_code}", site.base + "/letters.txt"});
  CHECK(same.out() == "304");
  auto older =
      run("/usr/bin/curl", {"-sS", "-o", "/dev/null", "-z", "Sat, 05 Nov 1994 08:49:37 GMT", "-w",
                            "%{http_code}", site.base + "/letters.txt"});
  CHECK(older.out() == "200");

  auto missing = run("/usr/bin/curl",
                     {"-sS", "-o", "/dev/null", "-w", "%{http_code}", site.base + "/nope.html"});
  CHECK(missing.out() == "404");
  auto redirect = run("/usr/bin/curl", {"-sS", "-o", "/dev/null", "-w",
                                        "%{http_code} %{redirect_url}", site.base + "/img"});
  CHECK(redirect.out() == "301 " + site.base + "/img/");
  auto escape = run("/usr/bin/curl", {"-sS", "--path-as-is", "-o", "/dev/null", "-w",
                                      "%{http_code}", site.base + "/../client.py"});
  CHECK(escape.out() == "404");
}

TEST_CASE("wrk: one second of keep-alive load, every response 2xx, no socket errors") {
  Site site;
  auto p = run("/usr/bin/wrk", {"-t1", "-c4", "-d1s", site.base + "/letters.txt"}, 60s);
  CHECK_MESSAGE(p.exit_code() == 0, p.err());
  INFO(p.out());
  const std::size_t at = p.out().find(" requests in ");
  REQUIRE(at != std::string::npos);
  const std::size_t start = p.out().rfind('\n', at) + 1;
  CHECK(std::strtoull(p.out().c_str() + start, nullptr, 10) > 0);
  CHECK(p.out().find("Non-2xx") == std::string::npos);
  CHECK(p.out().find("Socket errors") == std::string::npos);
}

TEST_CASE("ab -k: 200 requests over 4 keep-alive connections, none failed") {
  Site site;
  auto p = run("/usr/bin/ab", {"-k", "-n", "200", "-c", "4", site.base + "/style.css"}, 60s);
  CHECK_MESSAGE(p.exit_code() == 0, p.err());
  INFO(p.out());
  CHECK(p.out().find("Complete requests:      200") != std::string::npos);
  CHECK(p.out().find("Failed requests:        0") != std::string::npos);
  CHECK(p.out().find("Keep-Alive requests:    200") != std::string::npos);
}

TEST_CASE("Python: http.client reuses its connection, urllib fetches, a raw socket pipelines") {
  Site site;
  const std::string script = R"(
import http.client, re, socket, sys, urllib.request
port = int(sys.argv[1])
c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
c.request("GET", "/letters.txt")
r = c.getresponse(); body = r.read(); first = c.sock
assert r.status == 200 and len(body) == 4096, (r.status, len(body))
c.request("HEAD", "/style.css")
r = c.getresponse(); r.read()
assert r.status == 200 and c.sock is first, "connection not reused"
c.request("GET", "/letters.txt", headers={"Range": "bytes=0-2"})
r = c.getresponse()
assert r.status == 206 and r.read() == b"abc"
c.close()
with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=10) as u:
    page = u.read().decode()
    assert "reactor http" in page and u.headers["Content-Type"].startswith("text/html")
s = socket.create_connection(("127.0.0.1", port), timeout=10)
s.sendall(b"GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n"
          b"GET /letters.txt HTTP/1.1\r\nHost: x\r\nRange: bytes=-3\r\n\r\n"
          b"GET /missing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
data = b""
while True:
    chunk = s.recv(65536)
    if not chunk: break
    data += chunk
heads = [h.strip() for h in re.findall(rb"HTTP/1\.1 [0-9]{3} [A-Za-z ]+\r\n", data)]
assert heads == [b"HTTP/1.1 200 OK", b"HTTP/1.1 206 Partial Content", b"HTTP/1.1 404 Not Found"], heads
assert b"\r\n\r\nlmn" in data  # the last 3 of 4096 letters a..z repeated
print("ok")
)";
  auto p = python(site, script, {site.port});
  CHECK_MESSAGE(p.exit_code() == 0, p.err());
  CHECK(p.out() == "ok\n");
}

TEST_CASE("bad requests over a real socket: 400 then close, 405, slow headers get 408") {
  Site site({"header-timeout=1"});
  {
    auto fd = test::connect_to(site.server->addresses.at(0));
    test::send_all(fd.get(), "BREW /pot HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n");
    const std::string text = test::read_to_eof(fd.get());
    const auto out = test::parse_responses(text);
    REQUIRE(out.size() == 2);
    CHECK(out[0].status == 405);
    CHECK(out[0].header("allow") == "GET, HEAD");
    CHECK(out[1].status == 400);
  }
  {
    auto fd = test::connect_to(site.server->addresses.at(0));
    test::send_all(fd.get(), "GET / HTTP/1.1\r\nHost: x\r\n");  // never finished
    REQUIRE(reactor::set_receive_timeout(fd.get(), 20s) == std::error_code{});
    const auto out = test::parse_responses(test::read_to_eof(fd.get()));
    REQUIRE(out.size() == 1);
    CHECK(out[0].status == 408);
  }
}

TEST_CASE("an idle keep-alive connection is closed after keepalive-timeout") {
  Site site({"keepalive-timeout=1"});
  auto fd = test::connect_to(site.server->addresses.at(0));
  REQUIRE(reactor::set_receive_timeout(fd.get(), 20s) == std::error_code{});
  test::send_all(fd.get(), "GET /style.css HTTP/1.1\r\nHost: x\r\n\r\n");
  const auto started = std::chrono::steady_clock::now();
  const auto out = test::parse_responses(test::read_to_eof(fd.get()));
  REQUIRE(out.size() == 1);
  CHECK(out[0].status == 200);
  CHECK(std::chrono::steady_clock::now() - started < 15s);
}

TEST_CASE("headless Chromium renders the page with its CSS and image from our server") {
  if (!on_path("chromium")) {
    MESSAGE("skipped: chromium is not installed (apt-get install chromium)");
    return;
  }
  Site site;
  const std::string profile = (site.root.outside() / "profile").string();
  const std::string shot = (site.root.outside() / "shot.png").string();
  // Only loopback is reachable: every other host name fails to resolve.
  const std::vector<std::string> common = {
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--user-data-dir=" + profile,
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-extensions",
      "--disable-default-apps",
      "--no-pings",
      "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
      "--virtual-time-budget=5000",
      "--window-size=200,200"};
  // The page's DOM after load, with a script's verdict on the stylesheet and the image.
  site.root.write("check.html",
                  "<!doctype html><html><head><link rel=stylesheet href=\"/style.css\"></head>"
                  "<body><img id=pic src=\"/img/green.png\"><p id=verdict>pending</p><script>"
                  "window.onload = function() {"
                  " var bg = getComputedStyle(document.body).backgroundColor;"
                  " var img = document.getElementById('pic');"
                  " document.getElementById('verdict').textContent ="
                  "  'bg=' + bg + ' img=' + img.naturalWidth + 'x' + img.naturalHeight; };"
                  "</script></body></html>");
  auto args = common;
  args.push_back("--dump-dom");
  args.push_back(site.base + "/check.html");
  auto dom = run("/usr/bin/chromium", args, 90s);
  CHECK_MESSAGE(dom.exit_code() == 0, dom.err());
  CHECK_MESSAGE(dom.out().find("bg=rgb(255, 0, 0) img=64x64") != std::string::npos, dom.out());

  args = common;
  args.push_back("--screenshot=" + shot);
  args.push_back(site.base + "/");
  auto screenshot = run("/usr/bin/chromium", args, 90s);
  CHECK_MESSAGE(screenshot.exit_code() == 0, screenshot.err());
  // Count red (the stylesheet's background) and green (the image) pixels in the screenshot.
  const std::string script = R"(
import struct, sys, zlib
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n"
pos, idat, w, h, ctype = 8, b"", 0, 0, 0
while pos < len(data):
    n, = struct.unpack(">I", data[pos:pos+4]); kind = data[pos+4:pos+8]; body = data[pos+8:pos+8+n]
    if kind == b"IHDR": w, h, depth, ctype = struct.unpack(">IIBB", body[:10])
    if kind == b"IDAT": idat += body
    pos += 12 + n
bpp = {2: 3, 6: 4}[ctype]
raw = zlib.decompress(idat); stride = w * bpp; prev = bytearray(stride); red = green = 0
for y in range(h):
    f = raw[y * (stride + 1)]; line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - bpp] if i >= bpp else 0; b = prev[i]; c = prev[i - bpp] if i >= bpp else 0
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c; pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    for x in range(w):
        r, g, bl = line[x*bpp:x*bpp+3]
        red += r > 200 and g < 60 and bl < 60
        green += g > 200 and r < 60 and bl < 60
    prev = line
print(red, green)
)";
  auto pixels = python(site, script, {shot});
  CHECK_MESSAGE(pixels.exit_code() == 0, pixels.err());
  std::istringstream counts(pixels.out());
  long red = 0, green = 0;
  counts >> red >> green;
  INFO("red=" << red << " green=" << green);
  CHECK(red > 1000);        // the CSS background was fetched and applied
  CHECK(green >= 64 * 60);  // the 64x64 image was fetched and drawn
}

TEST_CASE("reactor-server refuses http without a usable root: exit 2 and one line") {
  auto missing =
      test::run_to_exit(kServer, {"--protocol", "http", "--listen", "tcp://127.0.0.1:0"});
  CHECK(missing.exit_code() == 2);
  CHECK(missing.err().find("root=DIR is required") != std::string::npos);
  auto absent = test::run_to_exit(kServer, {"--protocol", "http", "--listen", "tcp://127.0.0.1:0",
                                            "--args", "root=/nonexistent/reactor-http-root"});
  CHECK(absent.exit_code() == 2);
  CHECK(absent.err().find("No such file or directory") != std::string::npos);
}
