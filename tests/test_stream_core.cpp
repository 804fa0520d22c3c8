// The sans-IO stream core on its own: no sockets, no loop. The test plays the driver: it queues
// output, says what the socket took, what the peer did and what time it is, and checks what the
// core answers.
#include <doctest/doctest.h>

#include <chrono>
#include <stdexcept>
#include <string>
#include <vector>

#include "reactor/error.hpp"
#include "reactor/stream_core.hpp"

using namespace std::chrono_literals;
using reactor::Errc;
using reactor::StreamCore;
using reactor::StreamLimits;
using Next = StreamCore::Next;

namespace {

const StreamCore::Clock::time_point t0{std::chrono::hours(1)};

std::vector<std::byte> bytes(std::size_t n) {
  return std::vector<std::byte>(n, std::byte{'x'});
}

void queue(StreamCore& core, std::size_t n) {
  REQUIRE(core.outbox().append(bytes(n)));
}

// The socket took `n` bytes of the outbox.
void written(StreamCore& core, std::size_t n) {
  core.outbox().bytes().consume(n);
}

}  // namespace

TEST_CASE("output above the high-water mark pauses reading until it drains to the low-water mark") {
  StreamLimits limits;
  limits.high_water = 1000;
  limits.low_water = 200;
  StreamCore core(t0);
  queue(core, 1000);
  CHECK_FALSE(core.update_backpressure(limits));  // at the mark, not above it
  CHECK(core.wants_input());
  queue(core, 1);
  CHECK(core.update_backpressure(limits));  // pauses now: a counter counts this once
  CHECK(core.reading_paused());
  CHECK_FALSE(core.wants_input());
  CHECK_FALSE(core.update_backpressure(limits));  // still paused, not paused again
  written(core, 600);                             // 401 left: above the low-water mark
  core.update_backpressure(limits);
  CHECK(core.reading_paused());
  written(core, 201);  // 200 left
  core.update_backpressure(limits);
  CHECK_FALSE(core.reading_paused());
  CHECK(core.wants_input());
}

TEST_CASE("with max_outbox set a peer over it is too slow and reading never pauses") {
  StreamLimits limits;
  limits.high_water = 100;
  limits.max_outbox = 500;
  StreamCore core(t0);
  queue(core, 500);
  CHECK_FALSE(core.over_outbox(limits));
  CHECK(core.over_outbox(limits, 1));  // a message about to be queued would not fit
  CHECK_FALSE(core.update_backpressure(limits));
  CHECK_FALSE(core.reading_paused());
  queue(core, 1);
  CHECK(core.over_outbox(limits));
  limits.max_outbox = 0;
  CHECK_FALSE(core.over_outbox(limits, 1u << 30));  // 0: no limit, backpressure instead
}

TEST_CASE("input the session leaves is kept, and over max_input closes with input_too_large") {
  StreamLimits limits;
  limits.max_input = 10;
  StreamCore core(t0);
  auto chunk = bytes(8);
  // Bytes read onto the stack: what the session did not consume is copied into the core.
  CHECK_FALSE(core.keep_leftover(chunk, 5, false, limits));
  CHECK(core.input().size() == 3);
  CHECK_FALSE(core.keep_leftover(chunk, 8, false, limits));  // all consumed: nothing added
  CHECK(core.input().size() == 3);
  // Bytes presented from the core's own input: consumed from it.
  REQUIRE(core.input().append(bytes(6)));  // 9 held: under the limit
  CHECK_FALSE(core.keep_leftover(core.input().readable(), 2, true, limits));
  CHECK(core.input().size() == 7);
  // A session that claims more than it got consumes what there is.
  CHECK_FALSE(core.keep_leftover(core.input().readable(), 100, true, limits));
  CHECK(core.input().empty());
  CHECK(core.keep_leftover(bytes(11), 0, false, limits) == Errc::input_too_large);
}

TEST_CASE("a close with output pending waits for the flush, then lingers within close_linger") {
  StreamLimits limits;
  limits.close_linger = 2s;
  StreamCore core(t0);
  queue(core, 100);
  CHECK(core.close(t0, limits) == Next::nothing);  // output first
  CHECK(core.close_wanted());
  CHECK(core.closing());
  CHECK_FALSE(core.accepts_output());
  CHECK_FALSE(core.wants_input());  // a closing connection stops reading until it lingers
  CHECK(core.deadline(limits) == t0 + 2s);
  CHECK(core.close(t0, limits) == Next::nothing);  // a second close changes nothing
  written(core, 100);
  // The peer may still be sending: closing with its input unread would reset the connection.
  CHECK(core.flushed() == Next::linger);
  core.lingered(t0 + 1s, limits);
  CHECK(core.lingering());
  CHECK(core.write_shut());
  CHECK(core.wants_input());                // reads, to discard what the peer still sends
  CHECK(core.deadline(limits) == t0 + 2s);  // the clock started at close(), not at the FIN
  CHECK(core.flushed() == Next::nothing);   // lingering already
  CHECK_FALSE(core.expired(t0 + 1999ms, limits));
  CHECK(core.expired(t0 + 2s, limits) == std::errc::timed_out);
}

TEST_CASE("a close the peer cannot be hurt by closes at once") {
  StreamLimits limits;
  StreamCore core(t0);
  core.peer_finished();
  CHECK(core.close(t0, limits) == Next::close);  // nothing pending, nothing unread
  CHECK_FALSE(core.closing());

  StreamCore still_sending(t0);
  CHECK(still_sending.close(t0, limits) == Next::linger);  // nothing pending, peer not done
  CHECK(still_sending.closing());

  StreamCore finished_later(t0);
  queue(finished_later, 10);
  CHECK(finished_later.close(t0, limits) == Next::nothing);
  finished_later.peer_finished();
  written(finished_later, 10);
  CHECK(finished_later.flushed() == Next::close);  // all read: a plain close sends FIN
}

TEST_CASE("a lingering close the server decided is bounded from the FIN") {
  StreamLimits limits;
  limits.close_linger = 3s;
  StreamCore core(t0);
  core.lingered(t0 + 5s, limits);  // no close(): a stopping blocking driver lingers on its own
  CHECK(core.deadline(limits) == t0 + 8s);
  CHECK_FALSE(core.expired(t0 + 7s, limits));
  CHECK(core.expired(t0 + 8s, limits) == std::errc::timed_out);
}

TEST_CASE("a connection silent for idle_timeout expires; traffic restarts the clock") {
  StreamLimits limits;
  StreamCore none(t0);
  CHECK(none.deadline(limits) == StreamCore::Clock::time_point::max());  // 0: no idle timeout
  CHECK_FALSE(none.expired(t0 + 24h, limits));

  limits.idle_timeout = 5s;
  StreamCore core(t0);
  CHECK(core.deadline(limits) == t0 + 5s);
  CHECK_FALSE(core.expired(t0 + 4s, limits));
  core.note_activity(t0 + 4s);
  CHECK(core.deadline(limits) == t0 + 9s);
  CHECK_FALSE(core.expired(t0 + 8s, limits));
  CHECK(core.expired(t0 + 9s, limits) == Errc::idle_timeout);
  // Once closing, the close deadline rules and traffic does not move it.
  limits.close_linger = 1s;
  queue(core, 1);
  core.close(t0 + 9s, limits);
  core.note_activity(t0 + 9500ms);
  CHECK(core.deadline(limits) == t0 + 10s);
  CHECK(core.expired(t0 + 10s, limits) == std::errc::timed_out);
}

TEST_CASE("shutdown_write sends FIN after the flush and closes once the peer finished") {
  StreamCore core(t0);
  queue(core, 10);
  CHECK(core.shutdown_write() == Next::nothing);  // output first
  CHECK_FALSE(core.accepts_output());
  CHECK(core.shutdown_write() == Next::nothing);  // asked once
  CHECK(core.wants_input());                      // we still read what the peer sends
  written(core, 10);
  CHECK(core.flushed() == Next::shutdown);
  CHECK(core.write_shut());
  CHECK(core.flushed() == Next::nothing);  // FIN once
  CHECK_FALSE(core.done());
  core.peer_finished();
  CHECK(core.done());

  StreamCore eof_first(t0);
  eof_first.peer_finished();
  CHECK(eof_first.shutdown_write() == Next::shutdown_close);  // nothing pending, peer done
}

TEST_CASE("the first close reason stands and survives the int encoding") {
  StreamCore core(t0);
  CHECK_FALSE(core.closed());
  CHECK(core.set_closed(Errc::too_slow));
  CHECK_FALSE(core.set_closed(std::make_error_code(std::errc::connection_reset)));
  CHECK(core.closed());
  CHECK(core.reason() == Errc::too_slow);
  CHECK_FALSE(core.accepts_output());
  CHECK_FALSE(core.wants_input());
  CHECK(core.flushed() == Next::nothing);
  for (std::error_code ec : {std::error_code(), make_error_code(Errc::session_failed),
                             reactor::errno_code(ECONNRESET), reactor::errno_code(ETIMEDOUT)}) {
    CHECK(StreamCore::decode(StreamCore::encode(ec)) == ec);
  }
}

TEST_CASE("last words go only to a peer dropped as idle or over max_input with nothing pending") {
  StreamCore core(t0);
  CHECK(core.says_last_words(Errc::idle_timeout));
  CHECK(core.says_last_words(Errc::input_too_large));
  CHECK_FALSE(core.says_last_words(Errc::too_slow));
  CHECK_FALSE(core.says_last_words({}));
  queue(core, 1);
  CHECK_FALSE(core.says_last_words(Errc::idle_timeout));  // it would land inside a reply
  CHECK(StreamCore::is_drop(Errc::too_slow));
  CHECK_FALSE(StreamCore::is_drop(Errc::session_failed));
}

TEST_CASE("a throwing session callback is caught and reported") {
  std::string seen;
  auto note = [&](const char* what) { seen = what; };
  CHECK(StreamCore::guard([] {}, note));
  CHECK(seen.empty());
  CHECK_FALSE(StreamCore::guard([] { throw std::runtime_error("bad frame"); }, note));
  CHECK(seen == "bad frame");
  CHECK_FALSE(StreamCore::guard([] { throw 42; }, note));
  CHECK(seen == "an exception that is not a std::exception");
}
