// REACTOR_HOT marks the code a connection's driver runs for every connection in a process that
// has no page-table entries for the program's code yet: a fork-model child (fork copies none for
// file-backed code; each 64 KiB window the child touches first is a page fault, which maps up to
// 16 pages that the child's exit unmaps again). GCC places such functions in .text.hot, and
// tools/server/child_path.ld lays the .text.hot of the child's objects out first, in one window.
// Measured with perf, faults by address: two windows of the program's code per child without it
// (the child's objects outgrew 64 KiB), one with it. Elsewhere it only tells the optimiser the
// function is hot.
#pragma once

#if defined(__GNUC__)
#define REACTOR_HOT [[gnu::hot]]
#else
#define REACTOR_HOT
#endif
