// File access for the HTTP session, behind a small interface so the session stays sans-IO: the
// session asks for a decoded path and gets an open descriptor and its metadata, or an errno.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace reactor::http {

// Owns one file descriptor (this protocol uses only the public plugin API, so not reactor::Fd).
class FileHandle {
 public:
  FileHandle() = default;
  explicit FileHandle(int fd) noexcept : fd_(fd) {}
  FileHandle(FileHandle&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  FileHandle& operator=(FileHandle&& other) noexcept;
  FileHandle(const FileHandle&) = delete;
  FileHandle& operator=(const FileHandle&) = delete;
  ~FileHandle() { reset(); }
  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  void reset() noexcept;

 private:
  int fd_ = -1;
};

struct OpenedFile {
  FileHandle file;  // open for reading (a directory is not kept open)
  int error = 0;    // errno when nothing was opened: ENOENT, EACCES, EXDEV (leaves the root), ...
  bool directory = false;
  bool regular = false;
  std::uint64_t size = 0;
  std::int64_t mtime = 0;  // seconds since the epoch
};

class FileSource {
 public:
  virtual ~FileSource() = default;
  // Opens `path` beneath the root: it starts with '/', is percent-decoded, and has no "." or
  // ".." segments and no NUL (decode_target makes such paths). Symlinks may be followed only while
  // they stay beneath the root.
  virtual OpenedFile open(std::string_view path) const = 0;
};

// The real file system beneath one directory, resolved once. Uses openat2(RESOLVE_BENEATH): the
// kernel refuses any step (symlink, "..", absolute link) that would leave the root, atomically.
// On kernels without openat2 it falls back to realpath and a prefix check against the root.
class RootDirectory final : public FileSource {
 public:
  enum class Resolve { openat2, realpath };  // realpath: the fallback, forced (for tests)
  // Null with a one-line reason in `error` if `dir` is not a readable directory.
  static std::unique_ptr<RootDirectory> open_root(std::string_view dir, std::string& error,
                                                  Resolve resolve = Resolve::openat2);
  OpenedFile open(std::string_view path) const override;
  const std::string& path() const noexcept { return real_path_; }

 private:
  RootDirectory(FileHandle dir, std::string real_path, Resolve resolve)
      : dir_(std::move(dir)), real_path_(std::move(real_path)), resolve_(resolve) {}
  OpenedFile open_by_realpath(std::string_view path) const;

  FileHandle dir_;
  std::string real_path_;  // realpath of the root, no trailing '/' (except for "/" itself)
  Resolve resolve_;
};

}  // namespace reactor::http
