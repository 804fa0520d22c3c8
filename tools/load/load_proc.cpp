#include "load_proc.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <cstdio>
#include <fstream>
#include <map>
#include <sstream>
#include <string_view>

namespace load {
namespace {

std::optional<std::string> read_small_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

template <class Int>
bool to_int(std::string_view s, Int& out) {
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && end == s.data() + s.size();
}

// Every pid under /proc with its parent.
std::multimap<pid_t, pid_t> scan_parents() {
  std::multimap<pid_t, pid_t> by_parent;
  DIR* dir = ::opendir("/proc");
  if (!dir) return by_parent;
  while (dirent* e = ::readdir(dir)) {
    pid_t pid = 0;
    if (!to_int(std::string_view(e->d_name), pid)) continue;
    if (auto t = read_cpu_times(pid)) by_parent.emplace(t->parent, pid);
  }
  ::closedir(dir);
  return by_parent;
}

bool kernel_lists_children(pid_t pid) {
  return ::access(("/proc/" + std::to_string(pid) + "/task/" + std::to_string(pid) + "/children")
                      .c_str(),
                  R_OK) == 0;
}

std::vector<pid_t> children_from_task_files(pid_t pid) {
  std::vector<pid_t> kids;
  std::string task_dir = "/proc/" + std::to_string(pid) + "/task";
  DIR* dir = ::opendir(task_dir.c_str());
  if (!dir) return kids;
  while (dirent* e = ::readdir(dir)) {
    if (e->d_name[0] == '.') continue;
    auto text = read_small_file(task_dir + "/" + e->d_name + "/children");
    if (!text) continue;
    std::istringstream ss(*text);
    pid_t child = 0;
    while (ss >> child) kids.push_back(child);
  }
  ::closedir(dir);
  return kids;
}

}  // namespace

std::optional<std::uint64_t> read_rss_bytes(pid_t pid) {
  auto text = read_small_file("/proc/" + std::to_string(pid) + "/status");
  if (!text) return std::nullopt;
  auto pos = text->find("\nVmRSS:");
  if (pos == std::string::npos) return std::nullopt;
  std::istringstream ss(text->substr(pos + 7));
  std::uint64_t kib = 0;
  std::string unit;
  if (!(ss >> kib >> unit) || unit != "kB") return std::nullopt;
  return kib * 1024;
}

namespace {
// "Name:   123 kB" in an smaps_rollup text, in bytes.
std::optional<std::uint64_t> smaps_field(const std::string& text, std::string_view name) {
  const std::string key = std::string(name) + ":";
  std::size_t pos = 0;
  if (!text.starts_with(key)) {
    pos = text.find("\n" + key);
    if (pos == std::string::npos) return std::nullopt;
    pos += 1;
  }
  std::istringstream ss(text.substr(pos + key.size()));
  std::uint64_t kib = 0;
  std::string unit;
  if (!(ss >> kib >> unit) || unit != "kB") return std::nullopt;
  return kib * 1024;
}
}  // namespace

std::optional<std::uint64_t> parse_pss(const std::string& text) {
  return smaps_field(text, "Pss");
}

std::optional<std::uint64_t> parse_private_pss(const std::string& text) {
  auto anon = smaps_field(text, "Pss_Anon");
  if (!anon) return parse_pss(text);  // before Linux 5.14: all of Pss
  return *anon + smaps_field(text, "Pss_Shmem").value_or(0);
}

std::optional<std::uint64_t> tree_memory_bytes(pid_t root) {
  bool task_files = kernel_lists_children(root);
  std::multimap<pid_t, pid_t> by_parent;
  if (!task_files) by_parent = scan_parents();
  std::uint64_t total = 0;
  bool root_read = false;
  std::vector<pid_t> todo{root};
  while (!todo.empty()) {
    pid_t pid = todo.back();
    todo.pop_back();
    std::optional<std::uint64_t> bytes;
    if (auto text = read_small_file("/proc/" + std::to_string(pid) + "/smaps_rollup"))
      bytes = parse_private_pss(*text);
    if (!bytes) bytes = read_rss_bytes(pid);
    if (!bytes) continue;  // exited meanwhile
    if (pid == root) root_read = true;
    total += *bytes;
    if (task_files) {
      for (pid_t kid : children_from_task_files(pid)) todo.push_back(kid);
    } else {
      auto [lo, hi] = by_parent.equal_range(pid);
      for (auto it = lo; it != hi; ++it) todo.push_back(it->second);
    }
  }
  if (!root_read) return std::nullopt;
  return total;
}

std::optional<CpuTimes> parse_stat_line(const std::string& line) {
  // "pid (comm) state ppid ..." — comm may contain ") ", so split at the LAST ')'.
  auto close = line.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::istringstream ss(line.substr(close + 1));
  std::string field;
  std::vector<std::string> f;  // f[0] = state (field 3)
  while (f.size() < 15 && ss >> field) f.push_back(field);
  if (f.size() < 15) return std::nullopt;
  CpuTimes t;
  std::uint64_t utime = 0, stime = 0;
  std::int64_t cutime = 0, cstime = 0;
  if (!to_int(f[1], t.parent) || !to_int(f[11], utime) || !to_int(f[12], stime) ||
      !to_int(f[13], cutime) || !to_int(f[14], cstime)) {
    return std::nullopt;
  }
  t.self_ticks = utime + stime;
  t.children_ticks = static_cast<std::uint64_t>(cutime + cstime);
  return t;
}

std::optional<CpuTimes> read_cpu_times(pid_t pid) {
  auto text = read_small_file("/proc/" + std::to_string(pid) + "/stat");
  if (!text) return std::nullopt;
  return parse_stat_line(*text);
}

std::vector<pid_t> children_of(pid_t pid) {
  if (kernel_lists_children(pid)) return children_from_task_files(pid);
  std::vector<pid_t> kids;
  auto by_parent = scan_parents();
  auto [lo, hi] = by_parent.equal_range(pid);
  for (auto it = lo; it != hi; ++it) kids.push_back(it->second);
  return kids;
}

double tree_cpu_seconds(pid_t root) {
  static const double kTicksPerSecond = static_cast<double>(::sysconf(_SC_CLK_TCK));
  bool task_files = kernel_lists_children(root);
  std::multimap<pid_t, pid_t> by_parent;
  if (!task_files) by_parent = scan_parents();
  std::uint64_t ticks = 0;
  std::vector<pid_t> todo{root};
  while (!todo.empty()) {
    pid_t pid = todo.back();
    todo.pop_back();
    auto t = read_cpu_times(pid);
    if (!t) continue;  // gone (and reaped): its time is in its parent's cutime by now
    ticks += t->self_ticks + t->children_ticks;
    if (task_files) {
      for (pid_t kid : children_from_task_files(pid)) todo.push_back(kid);
    } else {
      auto [lo, hi] = by_parent.equal_range(pid);
      for (auto it = lo; it != hi; ++it) todo.push_back(it->second);
    }
  }
  return static_cast<double>(ticks) / kTicksPerSecond;
}

std::uint64_t raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    ::setrlimit(RLIMIT_NOFILE, &lim);
    ::getrlimit(RLIMIT_NOFILE, &lim);
  }
  return lim.rlim_cur;
}

}  // namespace load
