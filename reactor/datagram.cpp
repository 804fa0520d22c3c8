#include "reactor/datagram.hpp"

#include <sys/socket.h>

#include <cerrno>

#include "reactor/error.hpp"
#include "reactor/socket.hpp"

namespace reactor {

// The Peer for one received datagram: replies go back to its sender.
class DatagramEndpoint::ReplyPeer final : public Peer {
 public:
  ReplyPeer(DatagramEndpoint& endpoint, const Address& sender)
      : endpoint_(endpoint), sender_(sender) {}
  void send(std::span<const std::byte> bytes) override { endpoint_.send_to(sender_, bytes); }
  using Peer::send;
  void close() override {}  // nothing to close on a connectionless endpoint
  void shutdown_write() override {}
  std::size_t buffered() const override { return 0; }
  std::string remote() const override { return sender_.to_string(); }
  std::error_code send_file(int, std::uint64_t, std::uint64_t) override {
    return make_error_code(Errc::wrong_transport);
  }
  TimerId start_timer(std::chrono::milliseconds, std::chrono::milliseconds) override {
    return kNoTimer;
  }
  bool cancel_timer(TimerId) override { return false; }

 private:
  DatagramEndpoint& endpoint_;
  const Address& sender_;
};

DatagramEndpoint::DatagramEndpoint(Loop& loop, Fd fd, std::unique_ptr<Session> session,
                                   std::size_t max_datagram)
    : loop_(loop),
      fd_(std::move(fd)),
      session_(std::move(session)),
      max_datagram_(max_datagram < kMaxDatagram ? max_datagram : kMaxDatagram) {}

DatagramEndpoint::~DatagramEndpoint() {
  stop();
}

std::error_code DatagramEndpoint::start() {
  auto id = loop_.watch(fd_.get(), EPOLLIN, *this);
  if (!id) return id.error();
  watch_ = *id;
  return {};
}

void DatagramEndpoint::stop() {
  if (watch_ != kNoWatch) loop_.unwatch(watch_);
  watch_ = kNoWatch;
  if (session_) {
    try {
      session_->on_close({});
    } catch (...) {
    }
    session_.reset();
  }
  fd_.reset();
}

Result<Address> DatagramEndpoint::local_address() const {
  return reactor::local_address(fd_.get(), Transport::udp);
}

void DatagramEndpoint::on_events(std::uint32_t events) {
  if (events & EPOLLOUT) flush_queue();
  if (!(events & (EPOLLIN | EPOLLERR))) return;
  std::byte buffer[kMaxDatagram];
  for (int i = 0; i < kMaxReadsPerWakeup && fd_; ++i) {
    sockaddr_storage from{};
    iovec iov{buffer, max_datagram_};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof(from);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    ssize_t n = ::recvmsg(fd_.get(), &msg, 0);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return;
      continue;  // ICMP errors from earlier sends surface here (ECONNREFUSED): not ours to die of
    }
    Address sender =
        Address::from_sockaddr(reinterpret_cast<sockaddr*>(&from), msg.msg_namelen, Transport::udp);
    ++stats_.received;
    stats_.bytes_in += static_cast<std::uint64_t>(n);
    if (msg.msg_flags & MSG_TRUNC) {
      ++stats_.too_large;
      if (on_error_) on_error_(Errc::message_too_large, sender);
      continue;
    }
    ReplyPeer peer(*this, sender);
    try {
      session_->on_data(peer, {buffer, static_cast<std::size_t>(n)});
    } catch (...) {
      // One bad datagram must not take the endpoint down.
    }
  }
}

void DatagramEndpoint::send_to(const Address& to, std::span<const std::byte> bytes) {
  if (!fd_) return;
  if (queue_.empty()) {
    ssize_t n = ::sendto(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL, to.sockaddr_ptr(),
                         to.length());
    if (n >= 0) {
      ++stats_.sent;
      stats_.bytes_out += static_cast<std::uint64_t>(n);
      return;
    }
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ++stats_.send_failed;
      return;
    }
  }
  if (queue_.size() >= kMaxQueuedReplies) {
    ++stats_.send_failed;
    return;
  }
  queue_.push_back({to, std::vector<std::byte>(bytes.begin(), bytes.end())});
  if (queue_.size() == 1) loop_.modify(watch_, EPOLLIN | EPOLLOUT);
}

void DatagramEndpoint::flush_queue() {
  while (!queue_.empty()) {
    const Pending& p = queue_.front();
    ssize_t n = ::sendto(fd_.get(), p.bytes.data(), p.bytes.size(), MSG_NOSIGNAL,
                         p.to.sockaddr_ptr(), p.to.length());
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return;
    if (n < 0) {
      ++stats_.send_failed;
    } else {
      ++stats_.sent;
      stats_.bytes_out += static_cast<std::uint64_t>(n);
    }
    queue_.pop_front();
  }
  loop_.modify(watch_, EPOLLIN);
}

}  // namespace reactor
