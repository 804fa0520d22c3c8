#include <doctest/doctest.h>

#include <vector>

#include "reactor/timers.hpp"
#include "support/support.hpp"

using reactor::TimerQueue;
using Clock = TimerQueue::Clock;
using namespace std::chrono_literals;

TEST_CASE("due timers run in deadline order, ties in insertion order") {
  TimerQueue q;
  std::vector<int> order;
  auto t0 = Clock::now();
  q.add(t0 + 30ms, {}, [&] { order.push_back(30); });
  q.add(t0 + 10ms, {}, [&] { order.push_back(10); });
  q.add(t0 + 20ms, {}, [&] { order.push_back(20); });
  q.add(t0 + 20ms, {}, [&] { order.push_back(21); });
  CHECK(q.run_due(t0 + 5ms) == 0);
  CHECK(q.run_due(t0 + 20ms) == 3);
  CHECK(order == std::vector<int>{10, 20, 21});
  CHECK(q.run_due(t0 + 1s) == 1);
  CHECK(order.back() == 30);
  CHECK(q.size() == 0);
}

TEST_CASE("a cancelled timer never runs and cancelling twice is refused") {
  TimerQueue q;
  int ran = 0;
  auto t0 = Clock::now();
  auto id = q.add(t0 + 1ms, {}, [&] { ++ran; });
  CHECK(q.cancel(id));
  CHECK_FALSE(q.cancel(id));
  CHECK(q.run_due(t0 + 1s) == 0);
  CHECK(ran == 0);
  CHECK(q.next_deadline() == Clock::time_point::max());
}

TEST_CASE("an old id does not cancel a new timer that reuses its slot") {
  TimerQueue q;
  auto t0 = Clock::now();
  auto old_id = q.add(t0 + 1ms, {}, [] {});
  REQUIRE(q.cancel(old_id));
  int ran = 0;
  q.add(t0 + 1ms, {}, [&] { ++ran; });
  CHECK_FALSE(q.cancel(old_id));
  q.run_due(t0 + 1s);
  CHECK(ran == 1);
}

TEST_CASE("a repeating timer fires every period until cancelled from its own task") {
  TimerQueue q;
  int ran = 0;
  auto t0 = Clock::now();
  reactor::TimerId id = 0;
  id = q.add(t0 + 10ms, 10ms, [&] {
    if (++ran == 3) q.cancel(id);
  });
  for (int step = 1; step <= 10; ++step) q.run_due(t0 + step * 10ms);
  CHECK(ran == 3);
  CHECK(q.size() == 0);
}

TEST_CASE("a timer can cancel another one due in the same run") {
  TimerQueue q;
  auto t0 = Clock::now();
  int second_ran = 0;
  reactor::TimerId second = 0;
  q.add(t0 + 1ms, {}, [&] { q.cancel(second); });
  second = q.add(t0 + 2ms, {}, [&] { ++second_ran; });
  q.run_due(t0 + 1s);
  CHECK(second_ran == 0);
}

TEST_CASE("a task may add timers while the queue runs") {
  TimerQueue q;
  auto t0 = Clock::now();
  std::vector<int> order;
  q.add(t0 + 1ms, {}, [&] {
    order.push_back(1);
    for (int i = 0; i < 100; ++i) q.add(t0 + 2ms, {}, [&order] { order.push_back(2); });
  });
  q.run_due(t0 + 1s);
  CHECK(order.size() == 101);
}

TEST_CASE("100k timers: cancelling most keeps the heap bounded and the rest in order") {
  TimerQueue q;
  auto t0 = Clock::now();
  std::vector<reactor::TimerId> ids;
  for (int i = 0; i < 100000; ++i)
    ids.push_back(q.add(t0 + std::chrono::milliseconds(i % 1000), {}, [] {}));
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (i % 10 != 0) CHECK(q.cancel(ids[i]));
  }
  CHECK(q.size() == 10000);
  CHECK(q.run_due(t0 + 2s) == 10000);
}

TEST_CASE("loop timers fire in order at millisecond resolution") {
  auto loop = test::make_loop();
  std::vector<int> order;
  auto start = reactor::Loop::Clock::now();
  loop->after(30ms, [&] { order.push_back(30); });
  loop->after(10ms, [&] { order.push_back(10); });
  loop->after(20ms, [&] { order.push_back(20); });
  auto deadline = start + 10s;
  while (order.size() < 3 && reactor::Loop::Clock::now() < deadline) loop->run_once(1000ms);
  CHECK(order == std::vector<int>{10, 20, 30});
  CHECK(reactor::Loop::Clock::now() - start >= 30ms);  // never early
}
