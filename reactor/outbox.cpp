#include "reactor/outbox.hpp"

#include <fcntl.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>

#include "reactor/error.hpp"
#include "reactor/hot.hpp"

namespace reactor {

std::error_code Outbox::append_file(int fd, std::uint64_t offset, std::uint64_t length) {
  if (fd < 0) return errno_code(EBADF);
  if (length == 0) return {};
  Fd copy(::fcntl(fd, F_DUPFD_CLOEXEC, 0));
  if (!copy) return last_errno();
  if (!files_) files_ = std::make_unique<Files>();
  const std::uint64_t lead = bytes_.size() - files_->leads;
  files_->ranges.push_back({lead, std::move(copy), offset, length});
  files_->leads += lead;
  files_->file_bytes += length;
  return {};
}

ssize_t Outbox::send_file_chunk(int socket, FileRange& range, std::uint64_t max,
                                std::uint64_t& syscalls) {
  const std::size_t want = static_cast<std::size_t>(std::min(range.remaining, max));
  if (!range.use_read) {
    off_t offset = static_cast<off_t>(range.offset);
    ++syscalls;
    ssize_t n = ::sendfile(socket, range.fd.get(), &offset, want);
    if (n == 0 && want > 0) {
      errno = ENODATA;  // the file ended before the range did: the promised bytes cannot come
      return -1;
    }
    if (n >= 0 || (errno != EINVAL && errno != ENOSYS && errno != EOPNOTSUPP)) return n;
    range.use_read = true;  // not a regular file (a pipe, /proc, ...): read and send instead
  }
  std::byte chunk[64 * 1024];
  ssize_t got = ::pread(range.fd.get(), chunk, std::min(want, sizeof(chunk)),
                        static_cast<off_t>(range.offset));
  if (got <= 0) {
    if (got == 0) errno = ENODATA;  // the file is shorter than promised
    return -1;
  }
  ++syscalls;
  return ::send(socket, chunk, static_cast<std::size_t>(got), MSG_NOSIGNAL | MSG_DONTWAIT);
}

REACTOR_HOT ssize_t Outbox::write_to(int socket, std::uint64_t& syscalls, std::uint64_t budget) {
  std::uint64_t written = 0;
  while (written < budget && !empty()) {
    ssize_t n;
    bool short_write = false;
    if (!files_ || files_->ranges.front().lead > 0) {
      std::size_t max = files_ ? static_cast<std::size_t>(files_->ranges.front().lead) : SIZE_MAX;
      max = static_cast<std::size_t>(std::min<std::uint64_t>(max, budget - written));
      max = std::min(max, bytes_.size());
      ++syscalls;
      n = bytes_.write_to(socket, max);
      short_write = n >= 0 && static_cast<std::size_t>(n) < max;
      if (n > 0 && files_) {
        files_->ranges.front().lead -= static_cast<std::uint64_t>(n);
        files_->leads -= static_cast<std::uint64_t>(n);
      }
    } else {
      FileRange& range = files_->ranges.front();
      n = send_file_chunk(socket, range, budget - written, syscalls);
      if (n > 0) {
        range.offset += static_cast<std::uint64_t>(n);
        range.remaining -= static_cast<std::uint64_t>(n);
        files_->file_bytes -= static_cast<std::uint64_t>(n);
        if (range.remaining == 0) {
          files_->ranges.pop_front();
          if (files_->ranges.empty()) files_.reset();
        }
      }
    }
    if (n < 0) {
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) break;
      return written > 0 ? static_cast<ssize_t>(written) : -1;
    }
    if (n == 0) break;
    written += static_cast<std::uint64_t>(n);
    // A short send means the socket is full: do not ask again just to hear EAGAIN.
    if (short_write) break;
  }
  return static_cast<ssize_t>(written);
}

REACTOR_HOT void Outbox::clear() noexcept {
  bytes_.clear();
  files_.reset();
}

}  // namespace reactor
