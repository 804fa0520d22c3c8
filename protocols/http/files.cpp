#include "protocols/http/files.hpp"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

namespace reactor::http {
namespace {

constexpr int kOpenFlags = O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK;  // a FIFO never blocks

std::atomic<bool> openat2_missing{false};

void fill_stat(OpenedFile& out) {
  struct stat st {};
  if (::fstat(out.file.get(), &st) != 0) {
    out.error = errno;
    out.file.reset();
    return;
  }
  out.directory = S_ISDIR(st.st_mode);
  out.regular = S_ISREG(st.st_mode);
  out.size = static_cast<std::uint64_t>(st.st_size);
  out.mtime = static_cast<std::int64_t>(st.st_mtim.tv_sec);
  if (out.directory) out.file.reset();
}

}  // namespace

FileHandle& FileHandle::operator=(FileHandle&& other) noexcept {
  if (this != &other) {
    reset();
    fd_ = std::exchange(other.fd_, -1);
  }
  return *this;
}

void FileHandle::reset() noexcept {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

std::unique_ptr<RootDirectory> RootDirectory::open_root(std::string_view dir, std::string& error,
                                                        Resolve resolve) {
  const std::string given(dir);
  char resolved[PATH_MAX];
  if (given.empty() || ::realpath(given.c_str(), resolved) == nullptr) {
    error = "http: root=" + given + ": " + std::strerror(given.empty() ? ENOENT : errno);
    return nullptr;
  }
  FileHandle fd(::open(resolved, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    error = "http: root=" + given + ": " + std::strerror(errno);
    return nullptr;
  }
  return std::unique_ptr<RootDirectory>(new RootDirectory(std::move(fd), resolved, resolve));
}

OpenedFile RootDirectory::open(std::string_view path) const {
  OpenedFile out;
  if (path.empty() || path.front() != '/' || path.find('\0') != std::string_view::npos) {
    out.error = ENOENT;
    return out;
  }
  if (resolve_ == Resolve::openat2 && !openat2_missing.load(std::memory_order_relaxed)) {
    std::string relative = path.size() == 1 ? std::string(".") : std::string(path.substr(1));
    open_how how{};
    how.flags = kOpenFlags;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS;
    const long fd = ::syscall(SYS_openat2, dir_.get(), relative.c_str(), &how, sizeof how);
    if (fd >= 0) {
      out.file = FileHandle(static_cast<int>(fd));
      fill_stat(out);
      return out;
    }
    if (errno != ENOSYS) {
      out.error = errno;
      return out;
    }
    openat2_missing.store(true, std::memory_order_relaxed);
  }
  return open_by_realpath(path);
}

OpenedFile RootDirectory::open_by_realpath(std::string_view path) const {
  OpenedFile out;
  const std::string joined = (real_path_ == "/" ? std::string() : real_path_) + std::string(path);
  char resolved[PATH_MAX];
  if (::realpath(joined.c_str(), resolved) == nullptr) {
    out.error = errno;
    return out;
  }
  const std::string_view r(resolved);
  const bool inside = real_path_ == "/" || r == real_path_ ||
                      (r.starts_with(real_path_) && r[real_path_.size()] == '/');
  if (!inside) {
    out.error = EXDEV;
    return out;
  }
  out.file = FileHandle(::open(resolved, kOpenFlags | O_NOFOLLOW));
  if (!out.file) {
    out.error = errno;
    return out;
  }
  fill_stat(out);
  return out;
}

}  // namespace reactor::http
