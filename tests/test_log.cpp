// The logging interface: levels, a replaceable sink, and the loop reporting a broken epoll.
#include <doctest/doctest.h>
#include <fcntl.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include "reactor/log.hpp"
#include "reactor/loop.hpp"

namespace {

struct Captured {
  std::vector<std::pair<reactor::LogLevel, std::string>> lines;
};

void capture(reactor::LogLevel level, std::string_view message, void* context) {
  static_cast<Captured*>(context)->lines.emplace_back(level, std::string(message));
}

// Installs the capturing sink for one test and restores the defaults after it.
struct SinkScope {
  Captured captured;
  SinkScope() { reactor::set_log_sink(&capture, &captured); }
  ~SinkScope() {
    reactor::set_log_sink(nullptr);
    reactor::set_log_level(reactor::LogLevel::warn);
  }
};

}  // namespace

TEST_CASE("messages above the level are dropped; the sink gets the formatted rest") {
  SinkScope scope;
  CHECK(reactor::log_level() == reactor::LogLevel::warn);
  reactor::log(reactor::LogLevel::info, "hidden %d", 1);
  reactor::log(reactor::LogLevel::warn, "shown %s=%d", "x", 2);
  reactor::log(reactor::LogLevel::error, "bad");
  reactor::set_log_level(reactor::LogLevel::debug);
  reactor::log(reactor::LogLevel::debug, "detail");
  REQUIRE(scope.captured.lines.size() == 3);
  CHECK(scope.captured.lines[0].first == reactor::LogLevel::warn);
  CHECK(scope.captured.lines[0].second == "shown x=2");
  CHECK(scope.captured.lines[1].second == "bad");
  CHECK(scope.captured.lines[2].second == "detail");
}

TEST_CASE("a long message is cut, not overrun") {
  SinkScope scope;
  const std::string big(5000, 'z');
  reactor::log(reactor::LogLevel::error, "%s", big.c_str());
  REQUIRE(scope.captured.lines.size() == 1);
  CHECK(scope.captured.lines[0].second.size() == 1023);
}

TEST_CASE("level names parse both ways and unknown ones are refused") {
  reactor::LogLevel level = reactor::LogLevel::warn;
  for (auto l : {reactor::LogLevel::error, reactor::LogLevel::warn, reactor::LogLevel::info,
                 reactor::LogLevel::debug}) {
    CHECK(reactor::parse_log_level(reactor::log_level_name(l), level));
    CHECK(level == l);
  }
  CHECK_FALSE(reactor::parse_log_level("verbose", level));
  CHECK_FALSE(reactor::parse_log_level("", level));
}

TEST_CASE("a loop whose epoll descriptor breaks reports it instead of spinning") {
  SinkScope scope;
  auto loop = reactor::Loop::create();
  REQUIRE(loop.ok());
  // Find the loop's epoll descriptor and put a regular file in its place: epoll_wait -> EINVAL.
  int epoll_fd = -1;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    auto target = std::filesystem::read_symlink(entry.path(), ec);
    if (!ec && target.string() == "anon_inode:[eventpoll]") {
      epoll_fd = std::stoi(entry.path().filename().string());
    }
  }
  REQUIRE(epoll_fd >= 0);
  int file = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  REQUIRE(file >= 0);
  REQUIRE(::dup2(file, epoll_fd) == epoll_fd);
  ::close(file);
  const std::error_code ec = (*loop)->run();  // returns, instead of looping forever
  CHECK(ec == std::errc::invalid_argument);
  REQUIRE(scope.captured.lines.size() == 1);
  CHECK(scope.captured.lines[0].first == reactor::LogLevel::error);
  CHECK(scope.captured.lines[0].second.find("epoll_wait") != std::string::npos);
}

TEST_CASE("stop() is sticky: run() returns at once every time after it") {
  auto loop = reactor::Loop::create();
  REQUIRE(loop.ok());
  (*loop)->stop();
  CHECK_FALSE((*loop)->run());
  CHECK_FALSE((*loop)->run());
  CHECK((*loop)->stopping());
}
