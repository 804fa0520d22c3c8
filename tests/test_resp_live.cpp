// reactor-server --protocol resp with the real clients: redis-cli (one-shot, interactive mode
// through a pipe, --pipe mass insertion), redis-benchmark, and Python's redis package, under the
// epoll, reuseport and thread models; and the fork model refusing a shared-memory protocol.
#include <doctest/doctest.h>
#include <stdlib.h>
#include <unistd.h>

#include <fstream>
#include <sstream>

#include "support/process.hpp"

using namespace std::chrono_literals;

namespace {

const std::string kServer = REACTOR_SERVER_PATH;
const std::string kRedisCli = "/usr/bin/redis-cli";
const std::string kRedisBenchmark = "/usr/bin/redis-benchmark";
const std::string kPython = "/usr/bin/python3";
constexpr std::array<std::string_view, 3> kModels = {"epoll", "reuseport", "thread"};

bool have(const std::string& path) {
  return ::access(path.c_str(), X_OK) == 0;
}

// A scratch directory removed at the end of the test.
struct TempDir {
  TempDir() {
    char name[] = "/tmp/resp-live-XXXXXX";
    REQUIRE(::mkdtemp(name) != nullptr);
    path = name;
  }
  ~TempDir() { test::run_to_exit("/bin/rm", {"-rf", path}); }
  std::string write(const std::string& name, const std::string& content) const {
    const std::string file = path + "/" + name;
    std::ofstream(file, std::ios::binary) << content;
    return file;
  }
  std::string path;
};

std::optional<test::ServerProcess> start_resp(const std::string& model,
                                              std::vector<std::string> extra = {}) {
  std::vector<std::string> args = {"--protocol",        "resp",    "--listen",
                                   "tcp://127.0.0.1:0", "--model", model};
  if (model == "reuseport") args.insert(args.end(), {"--workers", "2"});
  args.insert(args.end(), extra.begin(), extra.end());
  return test::start_server(kServer, args);
}

std::string port_of(const test::ServerProcess& server) {
  return std::to_string(server.addresses.at(0).port());
}

// redis-cli one-shot: its stdout.
std::string cli(const std::string& port, std::vector<std::string> command) {
  std::vector<std::string> args = {"-h", "127.0.0.1", "-p", port};
  args.insert(args.end(), command.begin(), command.end());
  auto p = test::run_to_exit(kRedisCli, args, 20s);
  CHECK_MESSAGE(p.exit_code() == 0, "redis-cli exit " << p.exit_code() << ": " << p.err());
  return p.out();
}

// A shell pipeline (stdin from a file), bounded.
test::Process shell(const std::string& script, std::chrono::milliseconds limit = 60s) {
  return test::run_to_exit("/bin/sh", {"-c", script}, limit);
}

void check_redis_cli(const std::string& port, const TempDir& dir) {
  CHECK(cli(port, {"PING"}) == "PONG\n");
  CHECK(cli(port, {"SET", "greeting", "hello world"}) == "OK\n");
  CHECK(cli(port, {"GET", "greeting"}) == "hello world\n");
  CHECK(cli(port, {"INCR", "counter"}) == "1\n");
  CHECK(cli(port, {"GET", "nothing"}) == "\n");
  CHECK(cli(port, {"FOO", "x"}) ==
        "ERR unknown command 'FOO', with args beginning with: 'x' \n\n");  // redis-cli adds a blank
                                                                           // line after errors

  // Interactive mode, fed through a pipe.
  const std::string commands = dir.write("commands", "SET a 1\nINCRBY a 41\nGET a\nDBSIZE\n");
  auto p = shell(kRedisCli + " -h 127.0.0.1 -p " + port + " < " + commands);
  CHECK(p.exit_code() == 0);
  CHECK(p.out() == "OK\n42\n42\n3\n");

  // --pipe mass insertion of 100k keys, in raw RESP.
  std::string mass;
  for (int i = 0; i < 100000; ++i) {
    const std::string key = "key:" + std::to_string(i), value = "value:" + std::to_string(i);
    mass += "*3\r\n$3\r\nSET\r\n$" + std::to_string(key.size()) + "\r\n" + key + "\r\n$" +
            std::to_string(value.size()) + "\r\n" + value + "\r\n";
  }
  CHECK(cli(port, {"FLUSHALL"}) == "OK\n");
  const std::string file = dir.write("mass", mass);
  auto pipe = shell(kRedisCli + " -h 127.0.0.1 -p " + port + " --pipe < " + file, 120s);
  CHECK_MESSAGE(pipe.exit_code() == 0, pipe.out() << pipe.err());
  CHECK(pipe.out().find("errors: 0, replies: 100000") != std::string::npos);
  CHECK(cli(port, {"DBSIZE"}) == "100000\n");
  CHECK(cli(port, {"GET", "key:99999"}) == "value:99999\n");
}

void check_redis_benchmark(const std::string& port) {
  auto p = test::run_to_exit(
      kRedisBenchmark,
      {"-h", "127.0.0.1", "-p", port, "-t", "ping,set,get,incr,mset", "-n", "2000", "-q"}, 120s);
  CHECK_MESSAGE(p.exit_code() == 0, p.err());
  CHECK_MESSAGE(p.err().empty(), p.err());
  // -q prints progress with '\r' and ends each test with "NAME: N requests per second".
  std::string out = p.out();
  for (auto& c : out) c = c == '\r' ? '\n' : c;
  CHECK(out.find("WARN") == std::string::npos);
  std::size_t results = 0;
  for (const auto& line : test::lines_of(out)) {
    const auto at = line.find(" requests per second");
    if (at == std::string::npos || line.find("rps=") != std::string::npos) continue;
    const auto colon = line.rfind(": ", at);
    REQUIRE(colon != std::string::npos);
    CHECK_MESSAGE(std::stod(line.substr(colon + 2, at - colon - 2)) > 0, line);
    ++results;
  }
  CHECK_MESSAGE(results == 6, out);  // PING_INLINE, PING_MBULK, SET, GET, INCR, MSET
}

constexpr const char* kPythonScript = R"(
import sys, time, redis
port = int(sys.argv[1])
r = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10)
assert r.ping()
assert r.set("py:k", b"bin\x00ary\r\n")
assert r.get("py:k") == b"bin\x00ary\r\n"
assert r.incr("py:n") == 1 and r.incr("py:n", 9) == 10
assert r.expire("py:k", 100) and 0 < r.ttl("py:k") <= 100
assert r.set("py:gone", "x", px=1)
deadline = time.time() + 10
while r.get("py:gone") is not None and time.time() < deadline: time.sleep(0.01)
assert r.get("py:gone") is None
base = r.dbsize()
for i in range(50): r.set("py:ex%d" % i, i, px=30)
deadline = time.time() + 10  # active expiry: nobody touches these keys again
while r.dbsize() != base and time.time() < deadline: time.sleep(0.02)
assert r.dbsize() == base, (r.dbsize(), base)
p = r.pipeline(transaction=False)
for i in range(100): p.set("py:p%d" % i, i)
p.get("py:p42"); p.incr("py:p42")
res = p.execute()
assert res[-2] == b"42" and res[-1] == 43, res[-2:]
try:
    r.incr("py:k"); raise SystemExit("INCR on a string must fail")
except redis.ResponseError as e:
    assert str(e) == "value is not an integer or out of range", str(e)
sub = redis.Redis(host="127.0.0.1", port=port, socket_timeout=10).pubsub()
sub.subscribe("py:chan")
m = sub.get_message(timeout=10)
assert m["type"] == "subscribe", m
deadline = time.time() + 10
while r.publish("py:chan", "hello") != 1 and time.time() < deadline: time.sleep(0.01)
m = sub.get_message(timeout=10)
assert m is not None and m["type"] == "message" and m["data"] == b"hello", m
print("python ok")
)";

void check_python(const std::string& port, const TempDir& dir) {
  const std::string script = dir.write("client.py", kPythonScript);
  auto p = test::run_to_exit(kPython, {script, port}, 60s);
  CHECK_MESSAGE(p.exit_code() == 0, p.out() << p.err());
  CHECK(p.out() == "python ok\n");
}

}  // namespace

TEST_CASE("redis-cli, redis-benchmark and Python's redis talk to resp under every model") {
  REQUIRE_MESSAGE(have(kRedisCli), "redis-cli is missing (apt-get install redis-tools)");
  REQUIRE_MESSAGE(have(kRedisBenchmark), "redis-benchmark is missing (redis-tools)");
  REQUIRE_MESSAGE(have(kPython), "python3 is missing");
  for (const std::string_view model : kModels) {
    SUBCASE(std::string(model).c_str()) {
      auto server = start_resp(std::string(model));
      REQUIRE(server.has_value());
      const std::string port = port_of(*server);
      TempDir dir;
      check_redis_cli(port, dir);
      check_redis_benchmark(port);
      check_python(port, dir);
      test::stop_server(*server);
    }
  }
}

TEST_CASE("a refused connection hears Redis's max-clients error") {
  auto server = start_resp("epoll", {"--max-connections", "1"});
  REQUIRE(server.has_value());
  const std::string port = port_of(*server);
  TempDir dir;
  // The first client holds its connection (SUBSCRIBE waits) while the second is refused.
  const std::string script = dir.write("refused.py", R"(
import socket, sys, time
port = int(sys.argv[1])
a = socket.create_connection(("127.0.0.1", port), timeout=10)
a.sendall(b"PING\r\n"); assert a.recv(100) == b"+PONG\r\n"
b = socket.create_connection(("127.0.0.1", port), timeout=10)
data = b""
while True:
    chunk = b.recv(100)
    if not chunk: break
    data += chunk
print(data.decode(), end="")
)");
  auto p = test::run_to_exit(kPython, {script, port}, 30s);
  CHECK_MESSAGE(p.exit_code() == 0, p.err());
  CHECK(p.out() == "-ERR max number of clients reached\r\n");
  test::stop_server(*server);
}

TEST_CASE("the fork model refuses resp: its store needs shared memory") {
  auto p = test::run_to_exit(
      kServer, {"--protocol", "resp", "--model", "fork", "--listen", "tcp://127.0.0.1:0"});
  CHECK(p.exit_code() == 2);
  CHECK(p.err() ==
        "reactor-server: protocol resp needs shared memory: not available under --model fork\n");
  CHECK(p.out().empty());
}

TEST_CASE("the fork model refuses any plugin that shares memory, the same way") {
  auto p = test::run_to_exit(kServer, {"--plugin", SHARED_PLUGIN_PATH, "--protocol", "shared",
                                       "--model", "fork", "--listen", "tcp://127.0.0.1:0"});
  CHECK(p.exit_code() == 2);
  CHECK(p.err() ==
        "reactor-server: protocol shared needs shared memory: not available under --model fork\n");
  // Under the other models it serves.
  auto server = test::start_server(kServer, {"--plugin", SHARED_PLUGIN_PATH, "--protocol", "shared",
                                             "--listen", "tcp://127.0.0.1:0"});
  REQUIRE(server.has_value());
  test::stop_server(*server);
}

TEST_CASE("resp rejects bad --args with one line and exit 2") {
  auto p = test::run_to_exit(
      kServer, {"--protocol", "resp", "--args", "maxmemory=lots", "--listen", "tcp://127.0.0.1:0"});
  CHECK(p.exit_code() == 2);
  CHECK(p.err() == "reactor-server: --protocol resp: maxmemory=lots: expected a number\n");
}
