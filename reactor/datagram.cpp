#include "reactor/datagram.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "reactor/error.hpp"
#include "reactor/socket.hpp"

namespace reactor {

// The Peer for one received datagram: replies go back to its sender.
class DatagramEndpoint::ReplyPeer final : public Peer {
 public:
  ReplyPeer(DatagramEndpoint& endpoint, const Address& sender, const Source& source)
      : endpoint_(endpoint), sender_(sender), source_(source) {}
  void send(std::span<const std::byte> bytes) override {
    endpoint_.send_to(sender_, source_, bytes);
  }
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
  const Source& source_;
};

namespace {

// Whether the socket is bound to 0.0.0.0 or [::] (then the kernel would pick each reply's source
// by route, not by where the datagram went).
bool bound_to_wildcard(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof(ss);
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return false;
  if (ss.ss_family == AF_INET) {
    return reinterpret_cast<const sockaddr_in&>(ss).sin_addr.s_addr == htonl(INADDR_ANY);
  }
  if (ss.ss_family == AF_INET6) {
    const in6_addr& a = reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr;
    return std::memcmp(&a, &in6addr_any, sizeof(a)) == 0;
  }
  return false;
}

constexpr std::size_t kControlSpace =
    CMSG_SPACE(sizeof(in6_pktinfo)) + CMSG_SPACE(sizeof(in_pktinfo));

}  // namespace

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
  if (bound_to_wildcard(fd_.get())) {
    // An IPv6 socket may also take IPv4 datagrams (dual stack): ask for both kinds.
    const int on = 1;
    sockaddr_storage ss{};
    socklen_t len = sizeof(ss);
    ::getsockname(fd_.get(), reinterpret_cast<sockaddr*>(&ss), &len);
    if (ss.ss_family == AF_INET6 &&
        ::setsockopt(fd_.get(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &on, sizeof(on)) != 0) {
      return last_errno();
    }
    if (::setsockopt(fd_.get(), IPPROTO_IP, IP_PKTINFO, &on, sizeof(on)) != 0 &&
        ss.ss_family == AF_INET) {
      return last_errno();
    }
    wildcard_ = true;
  }
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
  alignas(cmsghdr) unsigned char control[kControlSpace];
  for (int i = 0; i < kMaxReadsPerWakeup && fd_; ++i) {
    sockaddr_storage from{};
    iovec iov{buffer, max_datagram_};
    msghdr msg{};
    msg.msg_name = &from;
    msg.msg_namelen = sizeof(from);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (wildcard_) {
      msg.msg_control = control;
      msg.msg_controllen = sizeof(control);
    }
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
    Source source;
    for (cmsghdr* c = wildcard_ ? CMSG_FIRSTHDR(&msg) : nullptr; c != nullptr;
         c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
        in_pktinfo got;
        std::memcpy(&got, CMSG_DATA(c), sizeof(got));
        source.kind = Source::v4_info;
        source.v4.ipi_spec_dst = got.ipi_addr;  // leave from where it arrived, any interface
      } else if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
        std::memcpy(&source.v6, CMSG_DATA(c), sizeof(source.v6));
        source.kind = Source::v6_info;  // keeps the interface: a link-local address needs it
      }
    }
    ReplyPeer peer(*this, sender, source);
    try {
      session_->on_data(peer, {buffer, static_cast<std::size_t>(n)});
    } catch (...) {
      // One bad datagram must not take the endpoint down.
    }
  }
}

ssize_t DatagramEndpoint::send_now(const Address& to, const Source& from,
                                   std::span<const std::byte> bytes) {
  if (from.kind == Source::none) {
    return ::sendto(fd_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL, to.sockaddr_ptr(),
                    to.length());
  }
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
  alignas(cmsghdr) unsigned char control[kControlSpace] = {};
  msghdr msg{};
  msg.msg_name = const_cast<sockaddr*>(to.sockaddr_ptr());
  msg.msg_namelen = to.length();
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  const bool v6 = from.kind == Source::v6_info;
  msg.msg_controllen = v6 ? CMSG_SPACE(sizeof(from.v6)) : CMSG_SPACE(sizeof(from.v4));
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = v6 ? IPPROTO_IPV6 : IPPROTO_IP;
  c->cmsg_type = v6 ? IPV6_PKTINFO : IP_PKTINFO;
  c->cmsg_len = v6 ? CMSG_LEN(sizeof(from.v6)) : CMSG_LEN(sizeof(from.v4));
  if (v6) {
    std::memcpy(CMSG_DATA(c), &from.v6, sizeof(from.v6));
  } else {
    std::memcpy(CMSG_DATA(c), &from.v4, sizeof(from.v4));
  }
  return ::sendmsg(fd_.get(), &msg, MSG_NOSIGNAL);
}

void DatagramEndpoint::send_to(const Address& to, const Source& from,
                               std::span<const std::byte> bytes) {
  if (!fd_) return;
  if (queue_.empty()) {
    ssize_t n = send_now(to, from, bytes);
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
  queue_.push_back({to, from, std::vector<std::byte>(bytes.begin(), bytes.end())});
  if (queue_.size() == 1) loop_.modify(watch_, EPOLLIN | EPOLLOUT);
}

void DatagramEndpoint::flush_queue() {
  while (!queue_.empty()) {
    const Pending& p = queue_.front();
    ssize_t n = send_now(p.to, p.from, p.bytes);
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
