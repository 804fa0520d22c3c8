// Runs a function in a forked child inside a fresh network namespace (only a down loopback:
// nothing it does can leave the machine) and returns the text it produced. nullopt when the
// namespace cannot be created (no CAP_SYS_ADMIN): the caller skips with a MESSAGE.
#pragma once

#include <doctest/doctest.h>
#include <sched.h>
#include <sys/wait.h>
#include <unistd.h>

#include <functional>
#include <optional>
#include <string>

namespace test {

inline std::optional<std::string> in_new_network_namespace(
    const std::function<std::string()>& body) {
  int report[2];
  REQUIRE(::pipe(report) == 0);
  pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::close(report[0]);
    // First byte: 'n' = no namespace, 'y' = the body's text follows.
    std::string out = ::unshare(CLONE_NEWNET) != 0 ? "n" : "y" + body();
    [[maybe_unused]] auto n = ::write(report[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(report[1]);
  std::string out;
  char buffer[512];
  for (ssize_t n; (n = ::read(report[0], buffer, sizeof(buffer))) > 0;) {
    out.append(buffer, static_cast<std::size_t>(n));
  }
  ::close(report[0]);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  REQUIRE(WIFEXITED(status));
  REQUIRE_FALSE(out.empty());
  if (out[0] == 'n') return std::nullopt;
  return out.substr(1);
}

}  // namespace test
