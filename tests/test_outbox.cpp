// Outbox: bytes and file ranges leave in the order they were queued, a chunk at a time as the
// socket takes them, and file ranges never pass through memory.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "reactor/error.hpp"
#include "reactor/fd.hpp"
#include "reactor/outbox.hpp"
#include "support/support.hpp"

namespace {

std::span<const std::byte> bytes_of(std::string_view s) {
  return {reinterpret_cast<const std::byte*>(s.data()), s.size()};
}

struct Pair {
  reactor::Fd writer, reader;
  Pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
    writer = reactor::Fd(fds[0]);
    reader = reactor::Fd(fds[1]);
  }
  // Reads what is there now (nonblocking).
  std::string drain() {
    std::string out;
    char chunk[65536];
    for (;;) {
      ssize_t n = ::recv(reader.get(), chunk, sizeof(chunk), MSG_DONTWAIT);
      if (n <= 0) return out;
      out.append(chunk, static_cast<std::size_t>(n));
    }
  }
};

reactor::Fd file_with(std::string_view content) {
  char name[] = "/tmp/outbox-XXXXXX";
  reactor::Fd fd(::mkstemp(name));
  REQUIRE(fd);
  ::unlink(name);
  REQUIRE(::write(fd.get(), content.data(), content.size()) == static_cast<ssize_t>(content.size()));
  return fd;
}

}  // namespace

TEST_CASE("bytes and file ranges go out in the order they were queued") {
  Pair pair;
  auto file = file_with("0123456789abcdef");
  reactor::Outbox out;
  REQUIRE(out.append(bytes_of("head:")));
  REQUIRE_FALSE(out.append_file(file.get(), 4, 6));
  REQUIRE(out.append(bytes_of(":mid:")));
  REQUIRE_FALSE(out.append_file(file.get(), 0, 3));
  REQUIRE(out.append(bytes_of(":tail")));
  CHECK(out.size() == 5 + 6 + 5 + 3 + 5);
  file.reset();  // the outbox keeps its own descriptor
  std::uint64_t syscalls = 0;
  CHECK(out.write_to(pair.writer.get(), syscalls) == 24);
  CHECK(out.empty());
  CHECK(syscalls == 5);  // send, sendfile, send, sendfile, send
  CHECK(pair.drain() == "head:456789:mid:012:tail");
}

TEST_CASE("only bytes: one send, however many appends") {
  Pair pair;
  reactor::Outbox out;
  for (int i = 0; i < 100; ++i) REQUIRE(out.append(bytes_of("x")));
  std::uint64_t syscalls = 0;
  CHECK(out.write_to(pair.writer.get(), syscalls) == 100);
  CHECK(syscalls == 1);
  CHECK(pair.drain() == std::string(100, 'x'));
}

TEST_CASE("a full socket takes a file a chunk at a time, and every byte arrives once") {
  Pair pair;
  const int small = 16 * 1024;
  ::setsockopt(pair.writer.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
  std::string content;
  for (int i = 0; i < 2'000'000; ++i) content += static_cast<char>('A' + i % 23);
  auto file = file_with(content);
  reactor::Outbox out;
  REQUIRE(out.append(bytes_of("<")));
  REQUIRE_FALSE(out.append_file(file.get(), 0, content.size()));
  REQUIRE(out.append(bytes_of(">")));
  std::string received;
  std::uint64_t syscalls = 0;
  int rounds = 0;
  while (!out.empty() && rounds < 100000) {
    ++rounds;
    const std::uint64_t before = out.size();
    ssize_t n = out.write_to(pair.writer.get(), syscalls);
    REQUIRE(n >= 0);
    CHECK(out.size() == before - static_cast<std::uint64_t>(n));
    received += pair.drain();
  }
  received += pair.drain();
  CHECK(rounds > 1);  // the socket really was full in between
  CHECK(received == "<" + content + ">");
}

TEST_CASE("the budget bounds one write_to call") {
  Pair pair;
  std::string content(300000, 'q');
  auto file = file_with(content);
  reactor::Outbox out;
  REQUIRE_FALSE(out.append_file(file.get(), 0, content.size()));
  std::uint64_t syscalls = 0;
  const ssize_t n = out.write_to(pair.writer.get(), syscalls, 1000);
  CHECK(n == 1000);
  CHECK(out.size() == content.size() - 1000);
}

TEST_CASE("a bad descriptor is refused and a zero-length range queues nothing") {
  reactor::Outbox out;
  CHECK(out.append_file(-1, 0, 10) == std::errc::bad_file_descriptor);
  CHECK(out.append_file(12345, 0, 10) == std::errc::bad_file_descriptor);
  auto file = file_with("abc");
  CHECK_FALSE(out.append_file(file.get(), 0, 0));
  CHECK(out.empty());
}

TEST_CASE("a file shorter than promised ends the output with an error") {
  Pair pair;
  auto file = file_with("short");
  reactor::Outbox out;
  REQUIRE_FALSE(out.append_file(file.get(), 0, 100));
  std::uint64_t syscalls = 0;
  ssize_t n = out.write_to(pair.writer.get(), syscalls);
  CHECK(n == 5);
  n = out.write_to(pair.writer.get(), syscalls);
  CHECK(n == -1);
  CHECK(pair.drain() == "short");
}
