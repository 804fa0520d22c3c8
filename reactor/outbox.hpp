// Outbox: what a stream connection has queued to send, in order: bytes, and file ranges between
// them (Peer::send_file). Files go out with sendfile(2), or pread+send where sendfile cannot work,
// a chunk at a time as the socket takes them: a file is never read into memory. Costs one Buffer
// plus a null pointer until a file is queued.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <system_error>

#include "reactor/buffer.hpp"
#include "reactor/fd.hpp"

namespace reactor {

class Outbox {
 public:
  // Bytes queued and not yet written, file bytes included.
  std::uint64_t size() const noexcept { return bytes_.size() + (files_ ? files_->file_bytes : 0); }
  bool empty() const noexcept { return size() == 0; }
  // The byte part alone (message transports keep their records there).
  Buffer& bytes() noexcept { return bytes_; }

  // False when the buffer cannot grow; nothing is queued then.
  [[nodiscard]] bool append(std::span<const std::byte> bytes, Buffer::Spare* spare = nullptr) {
    return bytes_.append(bytes, spare);
  }
  // Queues [offset, offset+length) of `fd` behind everything queued so far. Keeps a duplicate of
  // fd. Zero length queues nothing. sendfile takes no MSG_DONTWAIT: the socket must be in
  // nonblocking mode (bytes go out with MSG_DONTWAIT and never block, whatever its mode).
  std::error_code append_file(int fd, std::uint64_t offset, std::uint64_t length);

  // Writes what the socket takes without blocking, at most `budget` bytes (so that one busy peer
  // cannot hold the loop). Returns the bytes written (0: the socket is full) or -1 with errno on
  // an error. `syscalls` is increased by the send/sendfile calls made.
  ssize_t write_to(int socket, std::uint64_t& syscalls, std::uint64_t budget = 4u << 20);
  void clear() noexcept;

 private:
  struct FileRange {
    std::uint64_t lead;  // bytes of bytes_ that go out before this range
    Fd fd;
    std::uint64_t offset;
    std::uint64_t remaining;
    bool use_read = false;  // sendfile refused this file: pread+send
  };
  struct Files {
    std::deque<FileRange> ranges;
    std::uint64_t leads = 0;  // sum of the ranges' leads
    std::uint64_t file_bytes = 0;
  };
  ssize_t send_file_chunk(int socket, FileRange& range, std::uint64_t max, std::uint64_t& syscalls);

  Buffer bytes_;
  std::unique_ptr<Files> files_;
};

}  // namespace reactor
