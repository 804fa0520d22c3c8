#include <doctest/doctest.h>
#include <sys/socket.h>

#include <cstring>

#include "reactor/buffer.hpp"
#include "reactor/fd.hpp"
#include "reactor/session.hpp"
#include "support/support.hpp"

using reactor::Buffer;

TEST_CASE("a new buffer owns no memory") {
  Buffer b;
  CHECK(b.empty());
  CHECK(b.capacity() == 0);
  CHECK(b.readable().empty());
}

TEST_CASE("append then consume returns the bytes in order and frees memory when drained") {
  Buffer b;
  REQUIRE(b.append(reactor::as_bytes("hello ")));
  REQUIRE(b.append(reactor::as_bytes("world")));
  CHECK(reactor::as_text(b.readable()) == "hello world");
  b.consume(6);
  CHECK(reactor::as_text(b.readable()) == "world");
  CHECK(b.capacity() > 0);
  b.consume(5);
  CHECK(b.empty());
  CHECK(b.capacity() == 0);
}

TEST_CASE("consuming more than is held empties the buffer") {
  Buffer b;
  REQUIRE(b.append(reactor::as_bytes("abc")));
  b.consume(100);
  CHECK(b.empty());
}

TEST_CASE("growth keeps content across many appends and partial consumes") {
  Buffer b;
  std::string expected;
  for (int i = 0; i < 5000; ++i) {
    std::string piece = std::to_string(i) + ",";
    REQUIRE(b.append(reactor::as_bytes(piece)));
    expected += piece;
    if (i % 7 == 0) {
      b.consume(3);
      expected.erase(0, 3);
    }
  }
  CHECK(reactor::as_text(b.readable()) == expected);
}

TEST_CASE("moving a buffer moves its bytes") {
  Buffer a;
  REQUIRE(a.append(reactor::as_bytes("xyz")));
  Buffer b(std::move(a));
  CHECK(reactor::as_text(b.readable()) == "xyz");
  Buffer c;
  c = std::move(b);
  CHECK(reactor::as_text(c.readable()) == "xyz");
}

// The spare is the caller's: content that fits stays in it (the readable bytes point into it),
// content that outgrows it moves to a malloc'ed block, and neither draining nor destroying the
// buffer frees it (ASan would report a bad free).
TEST_CASE("a buffer given a spare keeps small content in it and outgrows it without freeing it") {
  Buffer::Spare spare;
  const auto* lo = reinterpret_cast<const std::byte*>(&spare);
  const auto* hi = lo + sizeof(spare);
  auto in_spare = [&](const Buffer& b) {
    const std::byte* p = b.readable().data();
    return p >= lo && p < hi;
  };
  {
    Buffer b;
    REQUIRE(b.append(reactor::as_bytes("small reply"), &spare));
    CHECK(in_spare(b));
    CHECK(b.capacity() == Buffer::Spare::kBytes);
    const std::string big(Buffer::Spare::kBytes, 'x');
    REQUIRE(b.append(reactor::as_bytes(big), &spare));  // outgrows it: a heap block, bytes kept
    CHECK_FALSE(in_spare(b));
    CHECK(reactor::as_text(b.readable()) == "small reply" + big);
    b.consume(b.size());
    CHECK(b.empty());
    REQUIRE(b.append(reactor::as_bytes("again"), &spare));  // drained: the spare serves again
    CHECK(in_spare(b));
    Buffer moved(std::move(b));
    CHECK(in_spare(moved));
    CHECK(reactor::as_text(moved.readable()) == "again");
  }  // destroyed holding the spare
  Buffer b;
  const std::string too_big(Buffer::Spare::kBytes + 1, 'y');
  REQUIRE(b.append(reactor::as_bytes(too_big), &spare));  // never fits: straight to the heap
  CHECK_FALSE(in_spare(b));
  CHECK(b.size() == too_big.size());
}

TEST_CASE("read_from takes a small read into an empty buffer through the spill") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  reactor::Fd a(sv[0]), b(sv[1]);
  test::send_all(b.get(), "ping");
  Buffer buf;
  CHECK(buf.read_from(a.get()) == 4);
  CHECK(reactor::as_text(buf.readable()) == "ping");
}

TEST_CASE("read_from fills the tail first and spills the rest, keeping order") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  reactor::Fd a(sv[0]), b(sv[1]);
  REQUIRE_FALSE(reactor::set_buffer_sizes(a.get(), 1 << 20, 0));
  REQUIRE_FALSE(reactor::set_buffer_sizes(b.get(), 0, 1 << 20));
  Buffer buf;
  REQUIRE(buf.append(reactor::as_bytes("head:")));
  std::size_t tail = buf.capacity() - buf.size();
  REQUIRE(tail > 0);
  auto payload = test::random_bytes(tail + 1000, 7);
  test::send_all(b.get(), payload);
  std::size_t got = 0;
  while (got < payload.size()) {
    auto n = buf.read_from(a.get());
    REQUIRE(n > 0);
    got += static_cast<std::size_t>(n);
  }
  auto readable = buf.readable();
  REQUIRE(readable.size() == 5 + payload.size());
  CHECK(std::memcmp(readable.data() + 5, payload.data(), payload.size()) == 0);
}

TEST_CASE("read_from reports EOF as 0 and errors as -1") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);
  reactor::Fd a(sv[0]), b(sv[1]);
  b.reset();
  Buffer buf;
  CHECK(buf.read_from(a.get()) == 0);
  CHECK(buf.read_from(-1) == -1);
}

TEST_CASE("write_to sends what the kernel takes and keeps the rest") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0);
  reactor::Fd a(sv[0]), b(sv[1]);
  auto payload = test::random_bytes(4 << 20, 3);  // more than a socket buffer holds
  Buffer buf;
  REQUIRE(buf.append(payload));
  auto n = buf.write_to(a.get());
  REQUIRE(n > 0);
  CHECK(static_cast<std::size_t>(n) < payload.size());
  CHECK(buf.size() == payload.size() - static_cast<std::size_t>(n));
}

TEST_CASE("append copies every length exactly, after any amount already held") {
  // Lengths up to 128 are copied inline in overlapping halves, longer ones with memcpy.
  auto source = test::random_bytes(300, 11);
  for (std::size_t held : {0u, 1u, 7u, 100u}) {
    for (std::size_t n = 0; n <= 300; ++n) {
      CAPTURE(held);
      CAPTURE(n);
      Buffer buf;
      REQUIRE(buf.append({source.data() + 300 - held, held}));
      REQUIRE(buf.append({source.data(), n}));
      auto readable = buf.readable();
      REQUIRE(readable.size() == held + n);
      if (held + n == 0) continue;  // nothing held: no memory to compare
      CHECK(std::memcmp(readable.data(), source.data() + 300 - held, held) == 0);
      CHECK(std::memcmp(readable.data() + held, source.data(), n) == 0);
    }
  }
}

TEST_CASE("on a blocking socket, read_from with MSG_DONTWAIT and write_to never block") {
  int sv[2];
  REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == 0);  // blocking mode
  reactor::Fd a(sv[0]), b(sv[1]);
  Buffer in;
  CHECK(in.read_from(a.get(), MSG_DONTWAIT) == -1);  // nothing there: EAGAIN, not a wait
  CHECK((errno == EAGAIN || errno == EWOULDBLOCK));
  test::send_all(b.get(), "pong");
  CHECK(in.read_from(a.get(), MSG_DONTWAIT) == 4);
  CHECK(reactor::as_text(in.readable()) == "pong");
  // More than the socket holds: write_to takes what fits and returns instead of waiting.
  auto payload = test::random_bytes(8 << 20, 5);
  Buffer out;
  REQUIRE(out.append(payload));
  ssize_t total = 0;
  for (int i = 0; i < 1000; ++i) {
    ssize_t n = out.write_to(a.get());
    if (n < 0) {
      CHECK((errno == EAGAIN || errno == EWOULDBLOCK));
      break;
    }
    total += n;
  }
  CHECK(total > 0);
  CHECK(static_cast<std::size_t>(total) < payload.size());
}
