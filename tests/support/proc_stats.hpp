// What /proc says about a process: its open descriptors and resident memory. Used to show that
// the server leaks neither under faults and load.
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <optional>

namespace test {

// Entries in /proc/PID/fd; nullopt if the process is gone.
std::optional<std::size_t> open_fd_count(pid_t pid);
// VmRSS from /proc/PID/status in KiB; nullopt if the process is gone.
std::optional<std::size_t> rss_kib(pid_t pid);

// Raises our own RLIMIT_NOFILE soft limit to the hard limit; returns the new soft limit.
std::size_t raise_fd_limit();

}  // namespace test
