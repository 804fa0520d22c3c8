// Drives a hiredis async context from a reactor::Loop, the way hiredis's own adapters (ae,
// libevent, libuv) drive it from theirs: the context's read/write hooks map onto one Watcher
// (Loop::watch/modify/unwatch), timeouts onto Loop timers.
//
// Lifetime: attach() allocates the adapter and hands it to the context (ac->ev.data); hiredis
// calls its cleanup hook when the context is freed, which unwatches the descriptor and cancels
// the timers. The Loop must outlive every context attached to it. Everything runs on the loop's
// thread.
#pragma once

#include <hiredis/async.h>

#include <chrono>

#include "reactor/loop.hpp"

namespace reactor::redis {

// Attaches `ac` to `loop`. REDIS_OK, or REDIS_ERR if `ac` already has an event library or the
// descriptor cannot be watched.
int attach(Loop& loop, redisAsyncContext* ac);

// Timeouts for an attached context (0 = none), on every hiredis version (0.14 has no
// redisAsyncSetTimeout; on 1.x that call works too, through the scheduleTimer hook):
//  - connect: if the context is not connected after this long, its connect callback gets
//    REDIS_ERR (ac->err = REDIS_ERR_IO, errstr "connect timed out") and the context is freed,
//    as hiredis does for a refused connection.
//  - command: if a command's reply is due for longer than this with no byte read, the
//    connection is shut down: pending callbacks get a NULL reply and the disconnect callback
//    REDIS_ERR. A subscribed context waits for messages as long as it likes (no timeout).
// Checked on a timer ticking at a quarter of the shortest timeout, so a timeout fires within
// 1.25 x its value. REDIS_ERR if `ac` is not attached to a Loop.
int set_timeouts(redisAsyncContext* ac, std::chrono::milliseconds connect,
                 std::chrono::milliseconds command);

}  // namespace reactor::redis
