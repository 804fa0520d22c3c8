// A temporary document root for HTTP tests: files and symlinks made on demand, removed at the end.
#pragma once

#include <doctest/doctest.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

namespace test {

class TempRoot {
 public:
  TempRoot() {
    std::string pattern = (std::filesystem::temp_directory_path() / "reactor-http-XXXXXX").string();
    REQUIRE(::mkdtemp(pattern.data()) != nullptr);
    base_ = pattern;
    root_ = base_ / "root";
    std::filesystem::create_directory(root_);
  }
  ~TempRoot() {
    std::error_code ec;
    std::filesystem::remove_all(base_, ec);
  }
  TempRoot(const TempRoot&) = delete;
  TempRoot& operator=(const TempRoot&) = delete;

  std::string root() const { return root_.string(); }
  // A directory beside the root (outside it): where escaping symlinks point.
  std::filesystem::path outside() const { return base_; }

  // Writes `content` to root/relative (parents made), mtime set to `mtime` if non-zero.
  void write(std::string_view relative, std::string_view content, std::int64_t mtime = 0) const {
    write_at(root_ / relative, content, mtime);
  }
  static void write_at(const std::filesystem::path& path, std::string_view content,
                       std::int64_t mtime = 0) {
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path, std::ios::binary)
        .write(content.data(), static_cast<std::streamsize>(content.size()));
    if (mtime != 0) {
      timeval times[2] = {{static_cast<time_t>(mtime), 0}, {static_cast<time_t>(mtime), 0}};
      REQUIRE(::utimes(path.c_str(), times) == 0);
    }
  }
  void mkdir(std::string_view relative) const {
    std::filesystem::create_directories(root_ / relative);
  }
  void symlink(std::string_view target, std::string_view relative) const {
    std::filesystem::create_symlink(target, root_ / relative);
  }

 private:
  std::filesystem::path base_;
  std::filesystem::path root_;
};

}  // namespace test
