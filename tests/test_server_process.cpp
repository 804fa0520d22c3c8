// reactor-server as a real process: echo on every transport and under every model, plugins,
// argument and listener errors, connection limits. Each test starts its own server on port 0
// (or a unique UNIX path) and reads the bound addresses from its "listening on" lines.
#include <doctest/doctest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <iterator>
#include <thread>

#include "support/process.hpp"
#include "support/support.hpp"

using namespace std::chrono_literals;

namespace {

const std::string kServer = REACTOR_SERVER_PATH;

std::string unique_path(std::string_view name) {
  static int counter = 0;
  return test::temp_socket_path(std::string(name) + "-" + std::to_string(++counter));
}

void echo_all_transports(const std::string& model);

// Runs `body(model)` once per model in test::kServerModels, each in its own SUBCASE.
template <class Body>
void for_each_model(Body body) {
  for (const std::string_view model : test::kServerModels) {
    SUBCASE(std::string(model).c_str()) {
      body(std::string(model));
    }
  }
}

std::vector<std::string> model_args(const std::string& model) {
  std::vector<std::string> args = {"--model", model};
  const auto workers = test::workers_args(model, 3);  // several loops, threads or processes
  args.insert(args.end(), workers.begin(), workers.end());
  return args;
}

std::string text_of(const std::vector<std::byte>& bytes) {
  return std::string(reinterpret_cast<const char*>(bytes.data()), bytes.size());
}

std::vector<std::byte> payload_for(std::size_t size, unsigned seed) {
  auto bytes = test::random_bytes(size, seed);
  bytes.front() = std::byte{0};  // binary: zero bytes must pass like any other
  bytes.back() = std::byte{0};
  return bytes;
}

// One stream client: a second thread sends `payload` in uneven chunks while this one reads the
// echo. Returns "" if every byte came back in order, else what went wrong (no doctest here: it
// runs on worker threads).
std::string echo_stream(const reactor::Address& address, const std::vector<std::byte>& payload) {
  auto fd = reactor::connect_blocking(address, 10s);
  if (!fd) return reactor::describe("connect " + address.to_string(), fd.error());
  if (reactor::set_receive_timeout(fd->get(), 10s) || reactor::set_send_timeout(fd->get(), 10s)) {
    return "cannot set socket timeouts";
  }
  std::string write_error;
  std::thread writer([&] {
    std::size_t sent = 0, chunk = 1;
    while (sent < payload.size()) {
      const std::size_t n = std::min(chunk, payload.size() - sent);
      if (auto ec = reactor::send_all(fd->get(), payload.data() + sent, n)) {
        write_error = reactor::describe("send", ec);
        return;
      }
      sent += n;
      chunk = chunk * 3 + 1;  // 1, 4, 13, ... bytes: chunk boundaries land everywhere
      if (chunk > 100000) chunk = 7;
    }
  });
  std::vector<std::byte> back(payload.size());
  auto got = reactor::recv_exact(fd->get(), back.data(), back.size());
  writer.join();
  if (!write_error.empty()) return write_error;
  if (!got) return reactor::describe("recv", got.error());
  if (*got != payload.size()) {
    return "echo ended after " + std::to_string(*got) + " of " + std::to_string(payload.size());
  }
  const auto diff = std::mismatch(back.begin(), back.end(), payload.begin());
  if (diff.first != back.end()) {
    return "echo differs at byte " + std::to_string(diff.first - back.begin());
  }
  return "";
}

// Runs one echo_stream per address at once; returns the failures (empty when all passed) and
// adds the bytes sent to `total`.
std::vector<std::string> echo_streams(const std::vector<reactor::Address>& clients,
                                      std::size_t size, std::uint64_t& total) {
  std::vector<std::string> results(clients.size());
  std::vector<std::vector<std::byte>> payloads;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    payloads.push_back(payload_for(size, static_cast<unsigned>(i + 1)));
  }
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < clients.size(); ++i) {
    threads.emplace_back([&, i] { results[i] = echo_stream(clients[i], payloads[i]); });
  }
  for (auto& t : threads) t.join();
  total += size * clients.size();
  std::vector<std::string> failures;
  for (std::size_t i = 0; i < results.size(); ++i) {
    if (!results[i].empty()) failures.push_back(clients[i].to_string() + ": " + results[i]);
  }
  return failures;
}

std::string joined(const std::vector<std::string>& lines) {
  std::string out;
  for (const auto& line : lines) out += line + "\n";
  return out;
}

// Receives one datagram/message with a buffer larger than any we send; its whole size.
std::vector<std::byte> receive_message(int fd) {
  std::vector<std::byte> buffer(70000);
  iovec iov{buffer.data(), buffer.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  const ssize_t n = ::recvmsg(fd, &msg, 0);
  REQUIRE_MESSAGE(n >= 0, "recvmsg: " << std::strerror(errno));
  CHECK((msg.msg_flags & MSG_TRUNC) == 0);
  buffer.resize(static_cast<std::size_t>(n));
  return buffer;
}

// Sends one message per size and checks each comes back whole and alone. `burst`: send them all
// before reading (reliable SEQPACKET); otherwise one at a time (UDP). Returns the bytes sent.
std::uint64_t check_messages(const reactor::Address& address, const std::vector<std::size_t>& sizes,
                             bool burst) {
  auto fd = test::connect_to(address);
  REQUIRE_FALSE(reactor::set_receive_timeout(fd.get(), 5s));
  std::vector<std::vector<std::byte>> sent;
  std::uint64_t total = 0;
  auto send_one = [&](std::size_t size) {
    sent.push_back(payload_for(size, static_cast<unsigned>(size)));
    const ssize_t n = ::send(fd.get(), sent.back().data(), size, MSG_NOSIGNAL);
    REQUIRE_MESSAGE(n == static_cast<ssize_t>(size),
                    "send " << size << ": " << std::strerror(errno));
    total += size;
  };
  auto expect_echo = [&](std::size_t i) {
    CAPTURE(sizes[i]);
    const auto back = receive_message(fd.get());
    CHECK(back.size() == sent[i].size());
    CHECK(back == sent[i]);
  };
  if (burst) {
    for (const std::size_t size : sizes) send_one(size);
    for (std::size_t i = 0; i < sizes.size(); ++i) expect_echo(i);
  } else {
    for (std::size_t i = 0; i < sizes.size(); ++i) {
      send_one(sizes[i]);
      expect_echo(i);
    }
  }
  return total;
}

// What a client sees when the server closes its connection: EOF or a reset, within `limit`.
// "" if so, else what it saw (data, or a timeout).
std::string wait_closed(int fd, std::chrono::milliseconds limit) {
  if (reactor::set_receive_timeout(fd, limit)) return "cannot set a receive timeout";
  char byte;
  const ssize_t n = ::recv(fd, &byte, 1, 0);
  if (n == 0 || (n < 0 && errno == ECONNRESET)) return "";
  if (n > 0) return "unexpected data";
  return errno == EAGAIN || errno == EWOULDBLOCK ? "still open after the wait"
                                                 : std::string(std::strerror(errno));
}

// Sends one line and reads one reply line (the kv protocol answers each line with one line).
std::string request(int fd, std::string_view line) {
  test::send_all(fd, std::string(line) + "\n");
  std::string reply;
  char c = 0;
  while (c != '\n') {
    auto n = reactor::recv_some(fd, &c, 1);
    REQUIRE_MESSAGE(n.ok(), "no reply to '" << line << "': " << n.error().message());
    REQUIRE_MESSAGE(*n == 1, "EOF instead of a reply to '" << line << "'");
    reply += c;
  }
  reply.pop_back();
  return reply;
}

// Runs reactor-server with arguments it must refuse: exit 2, one line on stderr naming the
// problem, nothing served. Returns that line.
std::string refused_line(const std::vector<std::string>& args) {
  auto p = test::run_to_exit(kServer, args);
  CHECK(p.exit_code() == 2);
  CHECK(p.out().find("listening on") == std::string::npos);
  CHECK(std::count(p.err().begin(), p.err().end(), '\n') == 1);
  CHECK(p.err().ends_with("\n"));
  return p.err().substr(0, p.err().find('\n'));
}

}  // namespace

TEST_CASE("one reactor-server echoes byte-exact over tcp, tcp6, unix, udp and seqpacket") {
  // Under every model whose registry entry says it serves all five transports.
  for_each_model([](const std::string& model) {
    if (test::model_info(model).transports != reactor::kAllTransports) {
      MESSAGE("skipped: the '" << model << "' model serves stream transports only");
      return;
    }
    echo_all_transports(model);
  });
}

namespace {

void echo_all_transports(const std::string& model) {
  const std::string unix_path = unique_path("all-stream");
  const std::string seq_path = unique_path("all-seq");
  auto server = test::start_server(
      kServer, {"--protocol", "echo", "--model", model, "--listen", "tcp://127.0.0.1:0", "--listen",
                "tcp://[::1]:0", "--listen", "unix:" + unix_path, "--listen", "udp://127.0.0.1:0",
                "--listen", "seqpacket:" + seq_path});
  REQUIRE(server);
  const auto& a = server->addresses;
  REQUIRE(a.size() == 5);
  CHECK(a[0].transport() == reactor::Transport::tcp);
  CHECK(a[0].port() != 0);
  CHECK(a[1].family() == AF_INET6);
  CHECK(a[1].port() != 0);
  CHECK(a[2].unix_path() == unix_path);
  CHECK(a[3].transport() == reactor::Transport::udp);
  CHECK(a[3].port() != 0);
  CHECK(a[4].transport() == reactor::Transport::unix_seqpacket);

  // Four clients per stream listener at once, 256 KiB each: 1 MiB per transport.
  std::vector<reactor::Address> clients;
  for (int i = 0; i < 4; ++i) clients.insert(clients.end(), {a[0], a[1], a[2]});
  std::uint64_t total = 0;
  const auto failures = echo_streams(clients, 256 * 1024, total);
  CHECK_MESSAGE(failures.empty(), joined(failures));

  const std::vector<std::size_t> udp_sizes = {1, 2, 100, 1472, 1500, 9000, 32768, 65507};
  const std::vector<std::size_t> seq_sizes = {1, 2, 100, 4096, 9000, 32768, 65536, 3};
  total += check_messages(a[3], udp_sizes, false);
  total += check_messages(a[4], seq_sizes, true);

  auto summary = test::stop_server(*server);
  CHECK(summary["bytes_in"] == total);
  CHECK(summary["bytes_out"] == total);
  CHECK(summary["connections"] == clients.size() + 1);  // the stream clients and SEQPACKET
  CHECK(summary["datagrams_in"] == udp_sizes.size());
  CHECK(summary["datagrams_out"] == udp_sizes.size());
  CHECK(summary["failed"] == 0);
  CHECK(summary["rejected"] == 0);
  CHECK(::access(unix_path.c_str(), F_OK) != 0);  // socket files removed on the way out
  CHECK(::access(seq_path.c_str(), F_OK) != 0);
}

}  // namespace

TEST_CASE("every model echoes byte-exact and stops cleanly on SIGTERM with clients connected") {
  for_each_model([](const std::string& model) {
    auto args = model_args(model);
    const std::string unix_path = unique_path("model-" + model);
    args.insert(args.end(), {"--protocol", "echo", "--listen", "tcp://127.0.0.1:0", "--listen",
                             "unix:" + unix_path, "--shutdown-grace", "3"});
    auto server = test::start_server(kServer, args);
    if (!server) return;
    const auto& a = server->addresses;
    REQUIRE(a.size() == 2);

    std::vector<reactor::Address> clients;
    for (int i = 0; i < 6; ++i) clients.push_back(a[0]);
    for (int i = 0; i < 2; ++i) clients.push_back(a[1]);
    std::uint64_t total = 0;
    const auto failures = echo_streams(clients, 128 * 1024, total);
    CHECK_MESSAGE(failures.empty(), joined(failures));

    // Three clients stay connected, each served once, while the server is told to stop.
    std::vector<reactor::Fd> connected;
    for (int i = 0; i < 3; ++i) {
      connected.push_back(test::connect_to(a[i % 2]));
      test::send_all(connected.back().get(), "ping");
      CHECK(text_of(test::read_exact(connected.back().get(), 4)) == "ping");
      total += 4;
    }
    auto summary = test::stop_server(*server);
    for (auto& fd : connected) CHECK(wait_closed(fd.get(), 5s) == "");
    CHECK(summary["bytes_in"] == total);
    CHECK(summary["bytes_out"] == total);
    CHECK(summary["connections"] == clients.size() + connected.size());
  });
}

TEST_CASE("the kv example plugin is served through --plugin and listed by --list-protocols") {
  SUBCASE("served") {
    auto server = test::start_server(
        kServer, {"--plugin", KV_PLUGIN_PATH, "--protocol", "kv", "--listen", "tcp://127.0.0.1:0"});
    REQUIRE(server);
    auto fd = test::connect_to(server->addresses.at(0));
    CHECK(request(fd.get(), "GET colour") == "ERR no such key");
    CHECK(request(fd.get(), "SET colour deep blue") == "OK");
    CHECK(request(fd.get(), "GET colour") == "OK deep blue");
    CHECK(request(fd.get(), "SET colour red\r") == "OK");
    CHECK(request(fd.get(), "GET colour") == "OK red");
    {
      auto other = test::connect_to(server->addresses.at(0));  // one store per server
      CHECK(request(other.get(), "GET colour") == "OK red");
    }
    CHECK(request(fd.get(), "DEL colour") == "OK");
    CHECK(request(fd.get(), "DEL colour") == "ERR no such key");
    CHECK(request(fd.get(), "FROB x") == "ERR usage: SET key value | GET key | DEL key");
    test::stop_server(*server);
  }
  SUBCASE("listed") {
    auto p = test::run_to_exit(kServer, {"--plugin", KV_PLUGIN_PATH, "--list-protocols"});
    CHECK(p.exit_code() == 0);
    bool listed = false;
    for (const auto& line : test::lines_of(p.out())) {
      if (line.starts_with("kv ")) {
        listed = true;
        CHECK(line.find("tcp,unix") != std::string::npos);
        CHECK(line.find("key-value") != std::string::npos);
      }
    }
    CHECK_MESSAGE(listed, p.out());
    CHECK(p.out().find("echo ") != std::string::npos);  // the built-ins are still there
  }
}

TEST_CASE("a plugin that cannot be loaded exits 2 naming the path and the problem") {
  struct Case {
    std::string path;
    std::string problem;
  };
  const std::vector<Case> cases = {
      {test::temp_socket_path("no-such-plugin.so"), "plugin file not found"},
      {NOT_A_PLUGIN_PATH, "not a shared object"},
      {NO_ENTRY_PLUGIN_PATH, "no reactor_plugin_v1 entry point"},
      {BAD_ABI_PLUGIN_PATH, "another reactor plugin ABI version"},
      {CLASH_PLUGIN_PATH, "taken by a built-in"},
      {UNRESOLVED_PLUGIN_PATH, "cannot load the shared object"},
      {NO_TRANSPORTS_PLUGIN_PATH, "transports = 0"},
      {BAD_SUMMARY_PLUGIN_PATH, "the summary must be one line"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.path);
    const std::string line =
        refused_line({"--plugin", c.path, "--protocol", "echo", "--listen", "tcp://127.0.0.1:0"});
    CHECK(line.starts_with("reactor-server: --plugin " + c.path + ": "));
    CHECK_MESSAGE(line.find(c.problem) != std::string::npos, line);
    // Named once: the loader's detail does not repeat it.
    CHECK_MESSAGE(line.find(c.path, line.find(c.path) + 1) == std::string::npos, line);
  }
  const std::string clash = refused_line(
      {"--plugin", CLASH_PLUGIN_PATH, "--protocol", "echo", "--listen", "tcp://127.0.0.1:0"});
  CHECK(clash.find("'echo'") != std::string::npos);
  const std::string twice =
      refused_line({"--plugin", KV_PLUGIN_PATH, "--plugin", KV_PLUGIN_PATH, "--list-protocols"});
  CHECK_MESSAGE(twice.find("plugin is already loaded") != std::string::npos, twice);
}

TEST_CASE("a truncated plugin exits 2 with one line instead of dying of SIGBUS") {
  std::ifstream in(KV_PLUGIN_PATH, std::ios::binary);
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  for (const std::size_t size : {std::size_t{1000}, std::size_t{3000}, std::size_t{12000}}) {
    CAPTURE(size);
    REQUIRE(bytes.size() > size);
    const std::string path = unique_path("truncated.so");
    std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(size));
    const std::string line = refused_line({"--plugin", path, "--list-protocols"});
    CHECK(line.starts_with("reactor-server: --plugin " + path + ": shared object is truncated"));
    ::unlink(path.c_str());
  }
}

TEST_CASE("a protocol's refusal of its --args names the protocol once") {
  CHECK(refused_line(
            {"--protocol", "chat", "--args", "colour=red", "--listen", "tcp://127.0.0.1:0"}) ==
        "reactor-server: --protocol chat: unknown option 'colour' (known: lobby=ROOM, "
        "max-line=BYTES)");
  CHECK(refused_line({"--plugin", PREFIX_PLUGIN_PATH, "--protocol", "prefix", "--listen",
                      "tcp://127.0.0.1:0"}) ==
        "reactor-server: --protocol prefix: needs the prefix as its argument");
  // A plugin that names itself in its message, as the docs once advised.
  CHECK(refused_line({"--plugin", SELFNAMED_PLUGIN_PATH, "--protocol", "selfnamed", "--listen",
                      "tcp://127.0.0.1:0"}) ==
        "reactor-server: --protocol selfnamed: needs an argument");
}

TEST_CASE("bad arguments exit 2 with one line naming the problem") {
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const std::vector<Case> cases = {
      {{"--protocol", "echo", "--listen", "tcp://127.0.0.1:0", "--frobnicate"},
       "unknown option '--frobnicate' (see --help)"},
      {{"--protocol", "echo", "--listen", "tcp://127.0.0.1:0", "stray"},
       "unknown option 'stray' (see --help)"},
      // A single-valued option given twice is an error, not last-wins; --listen repeats.
      {{"--protocol", "echo", "--protocol", "chat", "--listen", "tcp://127.0.0.1:0"},
       "--protocol given twice (it takes one value)"},
      {{"--protocol", "echo", "--model=fork", "--model", "thread", "--listen", "tcp://127.0.0.1:0"},
       "--model given twice (it takes one value)"},
      {{"--protocol", "echo", "--idle-timeout", "1", "--idle-timeout", "2", "--listen",
        "tcp://127.0.0.1:0"},
       "--idle-timeout given twice"},
      {{"--protocol", "echo"}, "--listen"},
      {{"--protocol", "echo", "--listen", "tcp://127.0.0.1:70000"},
       "tcp://127.0.0.1:70000: bad port"},
      {{"--protocol", "echo", "--listen", "ftp://127.0.0.1:21"}, "unknown scheme"},
      {{"--protocol", "gopher", "--listen", "tcp://127.0.0.1:0"}, "unknown protocol 'gopher'"},
      {{"--protocol", "chat", "--listen", "udp://127.0.0.1:0"},
       "udp://127.0.0.1:0: protocol 'chat' does not run over udp"},
      {{"--protocol", "echo", "--model", "thread", "--listen", "udp://127.0.0.1:0"},
       "udp://127.0.0.1:0: datagram listeners run on these models only"},
      {{"--protocol", "echo", "--workers", "2", "--listen", "tcp://127.0.0.1:0"},
       "--workers does not apply to --model epoll"},
      {{"--protocol", "chat", "--model", "prefork", "--listen", "tcp://127.0.0.1:0"},
       "--protocol chat: the prefork model does not run protocols that use the hub"},
      {{"--listen", "tcp://127.0.0.1:0"}, "--protocol is required"},
      {{"--protocol", "echo", "--listen"}, "--listen needs a value"},
      {{"--protocol", "echo", "--model", "coroutine", "--listen", "tcp://127.0.0.1:0"},
       "unknown model"},
      {{"--protocol", "echo", "--idle-timeout", "soon", "--listen", "tcp://127.0.0.1:0"},
       "--idle-timeout: expected seconds"},
      // Values that would silently mean "off": below the 1 ms resolution, or no connections.
      {{"--protocol", "echo", "--idle-timeout", "0.0001", "--listen", "tcp://127.0.0.1:0"},
       "--idle-timeout: expected seconds, 0 (never) or from 0.001"},
      {{"--protocol", "echo", "--shutdown-grace", "0.0004", "--listen", "tcp://127.0.0.1:0"},
       "--shutdown-grace: expected seconds"},
      {{"--protocol", "echo", "--max-connections", "0", "--listen", "tcp://127.0.0.1:0"},
       "--max-connections: expected a whole number from 1"},
  };
  for (const auto& c : cases) {
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    CAPTURE(joined);
    const std::string line = refused_line(c.args);
    CHECK(line.starts_with("reactor-server: "));
    CHECK_MESSAGE(line.find(c.says) != std::string::npos, line);
    CHECK(line.find("usage") == std::string::npos);
  }
}

// Connects to 127.0.0.1 or ::1 at `port`: "" if an echo comes back, else the error.
std::string echo_at(const std::string& host, std::uint16_t port) {
  auto fd =
      reactor::connect_blocking(test::parse("tcp://" + host + ":" + std::to_string(port)), 10s);
  if (!fd) return fd.error().message();
  test::send_all(fd->get(), "ping");
  return text_of(test::read_exact(fd->get(), 4)) == "ping" ? "" : "no echo";
}

TEST_CASE("tcp://*:P serves IPv4 and IPv6 clients; tcp://[::]:P is IPv6 only") {
  for_each_model([](const std::string& model) {
    std::vector<std::string> args = model_args(model);
    args.insert(args.end(), {"--protocol", "echo", "--listen", "tcp://*:0"});
    auto both = test::start_server(kServer, args);
    if (!both) return;
    // Printed as it was asked for, tcp://*:P, not as [::] (which means IPv6 only).
    CHECK(both->addresses.at(0).dual_stack());
    const std::uint16_t port = both->addresses.at(0).port();
    CHECK(echo_at("127.0.0.1", port) == "");
    CHECK(echo_at("[::1]", port) == "");
    test::stop_server(*both);
  });
  auto v6 = test::start_server(kServer, {"--protocol", "echo", "--listen", "tcp://[::]:0"});
  REQUIRE(v6);
  CHECK_FALSE(v6->addresses.at(0).dual_stack());
  const std::uint16_t port = v6->addresses.at(0).port();
  CHECK(echo_at("[::1]", port) == "");
  CHECK(echo_at("127.0.0.1", port) ==
        std::make_error_code(std::errc::connection_refused).message());
  test::stop_server(*v6);
}

TEST_CASE("seqpacket: a 64 KiB message echoes, a larger one closes the connection") {
  auto server = test::start_server(kServer, {"--protocol", "echo", "--log-level", "info",
                                             "--listen", "seqpacket:" + unique_path("limits")});
  REQUIRE(server);
  const auto address = server->addresses.at(0);
  CHECK(check_messages(address, {1, 65536}, true) == 65537);
  auto fd = test::connect_to(address);
  const std::vector<char> big(65537, 'b');
  REQUIRE(::send(fd.get(), big.data(), big.size(), MSG_NOSIGNAL) == 65537);
  CHECK(wait_closed(fd.get(), 10s) == "");
  auto summary = test::stop_server(*server);
  CHECK(summary["failed"] == 1);
  CHECK(summary["too_large"] == 1);     // counted as what it was
  CHECK(summary["bytes_in"] == 65537);  // the dropped message is not counted as read
  CHECK(server->process.err().find("dropped: a message over 65536 bytes") != std::string::npos);
}

TEST_CASE("seqpacket: a zero-length message reads as EOF and the server closes") {
  auto server = test::start_server(
      kServer, {"--protocol", "echo", "--listen", "seqpacket:" + unique_path("empty")});
  REQUIRE(server);
  auto fd = test::connect_to(server->addresses.at(0));
  test::send_all(fd.get(), "first");
  CHECK(text_of(test::read_exact(fd.get(), 5)) == "first");
  REQUIRE(::send(fd.get(), "", 0, MSG_NOSIGNAL) == 0);
  CHECK(wait_closed(fd.get(), 10s) == "");
  auto summary = test::stop_server(*server);
  CHECK(summary["connections"] == 1);
  CHECK(summary["failed"] == 0);  // an orderly close, like a peer's EOF
}

TEST_CASE("the SEQPACKET limits are documented in README.md and docs/writing-a-plugin.md") {
  for (const std::string file : {"README.md", "docs/writing-a-plugin.md"}) {
    CAPTURE(file);
    std::ifstream in(std::string(SOURCE_ROOT) + "/" + file);
    REQUIRE(in.good());
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(text.find("64 KiB") != std::string::npos);
    CHECK(text.find("zero-length message") != std::string::npos);
    CHECK(text.find("EOF") != std::string::npos);
  }
}

TEST_CASE("a port in use exits 1 with 'Address already in use'") {
  auto taken = reactor::listen_on(test::parse("tcp://127.0.0.1:0"));
  REQUIRE(taken.ok());
  auto bound = reactor::local_address(taken->get(), reactor::Transport::tcp);
  REQUIRE(bound.ok());
  const std::string url = bound->to_string();
  auto p = test::run_to_exit(kServer, {"--protocol", "echo", "--listen", url});
  CHECK(p.exit_code() == 1);
  CHECK(p.out().find("listening on") == std::string::npos);
  CHECK_MESSAGE(p.err().find("Address already in use") != std::string::npos, p.err());
  CHECK_MESSAGE(p.err().find(url) != std::string::npos, p.err());
  CHECK(std::count(p.err().begin(), p.err().end(), '\n') == 1);
}

TEST_CASE("a second server refuses a live unix or seqpacket path and leaves the first serving") {
  for (const std::string scheme : {"unix:", "seqpacket:"}) {
    CAPTURE(scheme);
    const std::string url = scheme + unique_path("live");
    auto first = test::start_server(kServer, {"--protocol", "echo", "--listen", url});
    REQUIRE(first);
    auto second = test::run_to_exit(kServer, {"--protocol", "echo", "--listen", url});
    CHECK(second.exit_code() == 1);
    CHECK(second.out().find("listening on") == std::string::npos);
    CHECK_MESSAGE(second.err().find("Address already in use") != std::string::npos, second.err());
    CHECK_MESSAGE(second.err().find(url) != std::string::npos, second.err());
    // The first server still owns the path: a new client reaches it.
    auto fd = test::connect_to(first->addresses.at(0));
    test::send_all(fd.get(), "still here");
    CHECK(text_of(test::read_exact(fd.get(), 10)) == "still here");
    test::stop_server(*first);
  }
}

TEST_CASE("a stale unix or seqpacket socket file is replaced") {
  for (const std::string scheme : {"unix:", "seqpacket:"}) {
    CAPTURE(scheme);
    const std::string url = scheme + unique_path("stale");
    {
      // A socket bound and closed without unlink: what a killed server leaves behind.
      auto left = reactor::listen_on(test::parse(url));
      REQUIRE(left.ok());
    }
    auto server = test::start_server(kServer, {"--protocol", "echo", "--listen", url});
    REQUIRE(server);
    auto fd = test::connect_to(server->addresses.at(0));
    test::send_all(fd.get(), "fresh");
    CHECK(text_of(test::read_exact(fd.get(), 5)) == "fresh");
    test::stop_server(*server);
  }
}

TEST_CASE("--version prints the tool and its version and exits 0") {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--version"}, {"--protocol", "echo", "--version"}}) {
    auto p = test::run_to_exit(kServer, args);
    CHECK(p.exit_code() == 0);
    CHECK(p.out().starts_with("reactor-server "));
    CHECK(std::count(p.out().begin(), p.out().end(), '\n') == 1);
    CHECK(p.out().find_first_of("0123456789") != std::string::npos);
    CHECK(p.err().empty());
  }
}

TEST_CASE("--help prints the usage and exits 0") {
  auto p = test::run_to_exit(kServer, {"--help"});
  CHECK(p.exit_code() == 0);
  CHECK(p.out().find("usage") != std::string::npos);
  CHECK(p.out().find("--listen") != std::string::npos);
  CHECK(p.err().empty());
}

TEST_CASE("--max-connections 2 closes a third client at once and keeps serving the first two") {
  auto server = test::start_server(
      kServer, {"--protocol", "echo", "--max-connections", "2", "--listen", "tcp://127.0.0.1:0"});
  REQUIRE(server);
  const auto address = server->addresses.at(0);
  auto first = test::connect_to(address);
  auto second = test::connect_to(address);
  for (int fd : {first.get(), second.get()}) {  // both accepted and served before the third
    test::send_all(fd, "hello");
    CHECK(text_of(test::read_exact(fd, 5)) == "hello");
  }
  auto third = test::connect_to(address);
  CHECK(wait_closed(third.get(), 5s) == "");
  for (int fd : {first.get(), second.get()}) {
    test::send_all(fd, "again");
    CHECK(text_of(test::read_exact(fd, 5)) == "again");
  }
  auto summary = test::stop_server(*server);
  CHECK(summary["connections"] == 2);
  CHECK(summary["rejected"] == 1);
}

TEST_CASE("--idle-timeout 0.3 closes a silent client") {
  auto server = test::start_server(
      kServer, {"--protocol", "echo", "--idle-timeout", "0.3", "--listen", "tcp://127.0.0.1:0"});
  REQUIRE(server);
  auto fd = test::connect_to(server->addresses.at(0));
  const auto start = std::chrono::steady_clock::now();
  CHECK(wait_closed(fd.get(), 5s) == "");
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= 250ms);  // not closed before its idle time
  CHECK(waited < 3s);
  auto summary = test::stop_server(*server);
  CHECK(summary["connections"] == 1);
  CHECK(summary["failed"] == 1);  // an idle close is a close with an error
}

// Makes the echo server hold output it cannot flush: sends without ever reading until the
// server stops reading too (backpressure), i.e. the send side stays full for 2 s. A graceful stop
// must then wait out its grace period for this client.
void stall_echo(int fd) {
  const std::vector<char> chunk(64 * 1024, 'x');
  for (int i = 0; i < 4096; ++i) {  // at most 256 MiB
    const ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n > 0) continue;
    REQUIRE_MESSAGE((n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)), std::strerror(errno));
    pollfd writable{fd, POLLOUT, 0};
    if (::poll(&writable, 1, 2000) == 0) return;
  }
  FAIL("the echo server kept reading 256 MiB that nobody read back");
}

TEST_CASE("a second SIGTERM during the grace period stops at once; the first says what it awaits") {
  for_each_model([](const std::string& model) {
    std::vector<std::string> args = model_args(model);
    args.insert(args.end(),
                {"--protocol", "echo", "--shutdown-grace", "120", "--listen", "tcp://127.0.0.1:0"});
    auto server = test::start_server(kServer, args);
    if (!server) return;
    auto client = test::connect_to(server->addresses.at(0));
    stall_echo(client.get());

    REQUIRE(server->process.signal(SIGTERM));
    const bool announced = server->process.pump_until(
        [&] { return server->process.err().find("signal again to stop now") != std::string::npos; },
        10s);
    REQUIRE_MESSAGE(announced, "stderr: " << server->process.err());
    CHECK(server->process.err().find("reactor: SIGTERM: stopping; ") != std::string::npos);
    CHECK(server->process.err().find("up to 120.0 s") != std::string::npos);
    CHECK_FALSE(server->process.exited());  // waiting out the grace period for our client

    REQUIRE(server->process.signal(SIGTERM));
    const auto status = server->process.wait_exit(30s);  // not the 120 s grace
    REQUIRE_MESSAGE(status.has_value(),
                    "still running after a second SIGTERM; stderr: " << server->process.err());
    CHECK(server->process.exit_code() == 0);
    CHECK(server->process.err().find("SIGTERM again: stopping now") != std::string::npos);
    const auto summary = test::parse_summary(server->process.out());
    CHECK(summary.count("connections") == 1);
  });
}

TEST_CASE("SIGHUP stops gracefully with a summary, like SIGTERM, on every model") {
  for_each_model([](const std::string& model) {
    std::vector<std::string> args = model_args(model);
    args.insert(args.end(), {"--protocol", "echo", "--listen", "tcp://127.0.0.1:0"});
    auto server = test::start_server(kServer, args);
    if (!server) return;
    {
      auto client = test::connect_to(server->addresses.at(0));
      test::send_all(client.get(), "hup");
      CHECK(text_of(test::read_exact(client.get(), 3)) == "hup");
    }
    REQUIRE(server->process.signal(SIGHUP));
    const auto status = server->process.wait_exit(15s);
    REQUIRE_MESSAGE(status.has_value(), "still running after SIGHUP");
    CHECK_MESSAGE(server->process.exit_code() == 0, "stderr: " << server->process.err());
    CHECK(server->process.err().find("reactor: SIGHUP: stopping") != std::string::npos);
    const auto summary = test::parse_summary(server->process.out());
    CHECK(summary.count("connections") == 1);
  });
}

TEST_CASE("SIGTERM right after 'listening on' still stops gracefully, on every model") {
  // The signal must wait for the model's signalfd, not kill the process before run() starts.
  for (std::string_view model : test::kServerModels) {
    CAPTURE(model);
    for (int i = 0; i < 10; ++i) {
      auto server = test::start_server(
          kServer,
          {"--protocol", "echo", "--model", std::string(model), "--listen", "tcp://127.0.0.1:0"});
      if (!server) break;
      auto summary = test::stop_server(*server);
      CHECK(summary.count("connections") == 1);
    }
  }
}

TEST_CASE("the select model closes, and logs, each connection whose descriptor is >= FD_SETSIZE") {
  // The server inherits this process's descriptor limit: raise it past FD_SETSIZE for both.
  constexpr std::size_t kClients = 1100;
  rlimit limit{};
  REQUIRE(::getrlimit(RLIMIT_NOFILE, &limit) == 0);
  if (limit.rlim_cur < kClients + 200) {
    limit.rlim_cur = std::min<rlim_t>(limit.rlim_max, kClients + 200);
    ::setrlimit(RLIMIT_NOFILE, &limit);
  }
  if (limit.rlim_cur < kClients + 200) {
    MESSAGE("skipped: RLIMIT_NOFILE hard limit " << limit.rlim_max << " is too low");
    return;
  }
  auto server = test::start_server(
      kServer, {"--protocol", "echo", "--model", "select", "--listen", "tcp://127.0.0.1:0"});
  REQUIRE(server);
  std::vector<reactor::Fd> clients;
  for (std::size_t i = 0; i < kClients; ++i)
    clients.push_back(test::connect_to(server->addresses[0]));
  // The server accepts in connection order: the first ones are served, the rest (descriptor
  // numbers from 1024 up) closed unserved.
  std::size_t echoed = 0, closed = 0, other = 0;
  bool prefix = true;
  for (auto& fd : clients) {
    REQUIRE_FALSE(reactor::set_receive_timeout(fd.get(), 10s));
    const ssize_t sent = ::send(fd.get(), "p", 1, MSG_NOSIGNAL);
    char byte = 0;
    const ssize_t n = sent == 1 ? ::recv(fd.get(), &byte, 1, 0) : -1;
    if (n == 1 && byte == 'p') {
      ++echoed;
      if (closed > 0) prefix = false;
    } else if (n == 0 || errno == ECONNRESET || errno == EPIPE) {
      ++closed;
    } else {
      ++other;
    }
  }
  CHECK(other == 0);
  CHECK(prefix);
  CHECK(echoed > 900);
  CHECK(echoed < 1024);
  CHECK(closed == kClients - echoed);
  clients.clear();
  auto summary = test::stop_server(*server);
  CHECK(summary["shed"] == closed);
  CHECK(summary["connections"] == echoed);
  CHECK(server->process.err().find("descriptor above FD_SETSIZE (1024)") != std::string::npos);
}

namespace {

// The pids of `pid`'s children (from /proc; empty if it cannot be read).
std::vector<pid_t> children_of(pid_t pid) {
  std::vector<pid_t> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children");
  for (long child; in >> child;) out.push_back(static_cast<pid_t>(child));
  std::sort(out.begin(), out.end());
  return out;
}

// Checks `done` every 20 ms until it holds or `limit` passes (for /proc state, which no
// descriptor signals).
template <class F>
bool wait_until(F done, std::chrono::milliseconds limit) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() >= deadline) return false;
    ::poll(nullptr, 0, 20);
  }
  return true;
}

// Kills one of `parent`'s two prefork workers with `signo` and waits (bounded) until the parent
// has two workers again, the victim not among them.
bool worker_replaced(pid_t parent, int signo) {
  std::vector<pid_t> workers;
  const auto two_workers = [&] {
    workers = children_of(parent);
    return workers.size() == 2;
  };
  if (!wait_until(two_workers, 10s)) return false;
  const pid_t victim = workers[0];
  if (::kill(victim, signo) != 0) return false;
  return wait_until(
      [&] {
        return two_workers() && std::find(workers.begin(), workers.end(), victim) == workers.end();
      },
      10s);
}

}  // namespace

TEST_CASE("prefork restarts a worker that dies and keeps serving; SIGTERM still exits 0") {
  auto server = test::start_server(kServer, {"--protocol", "echo", "--model", "prefork",
                                             "--workers", "2", "--listen", "tcp://127.0.0.1:0"});
  REQUIRE(server);
  CHECK(worker_replaced(server->process.pid(), SIGKILL));
  // Both workers (the survivor and the new one) serve: several connections all echo.
  for (int i = 0; i < 8; ++i) {
    auto fd = test::connect_to(server->addresses.at(0));
    test::send_all(fd.get(), "ping");
    CHECK(text_of(test::read_exact(fd.get(), 4)) == "ping");
  }
  auto summary = test::stop_server(*server);
  CHECK(summary["connections"] == 8);
  CHECK(summary["bytes_out"] == 32);
  CHECK(server->process.err().find("killed by signal 9; starting another") != std::string::npos);
}

TEST_CASE("prefork: a worker stopped on its own leaves the shared UNIX socket file in place") {
  const std::string path = test::temp_socket_path("prefork-unix");
  auto server = test::start_server(kServer, {"--protocol", "echo", "--model", "prefork",
                                             "--workers", "2", "--listen", "unix:" + path});
  REQUIRE(server);
  // SIGTERM to one worker: it stops gracefully (closing its inherited listener) and the parent
  // starts another. The file belongs to the parent: it must still be there, and serve.
  CHECK(worker_replaced(server->process.pid(), SIGTERM));
  struct stat st {};
  CHECK(::stat(path.c_str(), &st) == 0);
  for (int i = 0; i < 4; ++i) {
    auto fd = test::connect_to(server->addresses.at(0));
    test::send_all(fd.get(), "ping");
    CHECK(text_of(test::read_exact(fd.get(), 4)) == "ping");
  }
  auto summary = test::stop_server(*server);
  CHECK(summary["connections"] == 4);
  CHECK(::stat(path.c_str(), &st) != 0);  // the parent removes it when it stops
}
