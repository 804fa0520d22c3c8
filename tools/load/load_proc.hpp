// Reading other processes through /proc, for the load generator (server RSS) and the benchmark
// driver (server CPU time, children included).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace load {

// VmRSS from /proc/PID/status, in bytes.
std::optional<std::uint64_t> read_rss_bytes(pid_t pid);

// The memory of `pid` and of every descendant: the sum of their private PSS (parse_private_pss
// of /proc/PID/smaps_rollup: pages shared between a fork server's children are split among them,
// not counted N times), or of their VmRSS where smaps_rollup is missing. In bytes; nullopt if `pid` itself is unreadable.
std::optional<std::uint64_t> tree_memory_bytes(pid_t pid);
// "Pss:" of one smaps_rollup text, in bytes.
std::optional<std::uint64_t> parse_pss(const std::string& smaps_rollup);
// The memory a process wrote for itself: PSS of its anonymous and shared-memory pages (heap,
// stacks, copy-on-write copies, MAP_SHARED pages), without the program's and libraries' code
// and data files, which every process running them shares and which fault-around maps 64 KiB
// at a time when code first runs. Falls back to all of Pss where the kernel lacks Pss_Anon.
std::optional<std::uint64_t> parse_private_pss(const std::string& smaps_rollup);

struct CpuTimes {
  std::uint64_t self_ticks = 0;      // utime + stime: every thread of the process
  std::uint64_t children_ticks = 0;  // cutime + cstime: children already reaped
  pid_t parent = 0;
};
// Fields 14-17 of /proc/PID/stat (clock ticks), and the parent pid.
std::optional<CpuTimes> read_cpu_times(pid_t pid);
// Parses one /proc/PID/stat line (the command may hold spaces and parentheses).
std::optional<CpuTimes> parse_stat_line(const std::string& line);

// Direct children of `pid`: /proc/PID/task/*/children when the kernel has it, else a scan of
// /proc/*/stat for the parent pid.
std::vector<pid_t> children_of(pid_t pid);

// CPU time of `pid` and of all its descendants: its own threads, its reaped children, and every
// live (or not yet reaped) descendant's own and reaped time. In seconds.
double tree_cpu_seconds(pid_t pid);

// Raises RLIMIT_NOFILE's soft limit to the hard limit; returns the new soft limit.
std::uint64_t raise_fd_limit();

}  // namespace load
