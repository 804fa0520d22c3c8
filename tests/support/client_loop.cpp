#include "client_loop.hpp"

#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>

namespace test {
namespace {

// Work per client per turn is bounded (256 KiB read, 1 MiB written) so that no client waits long
// for its turn: a server with a short idle timeout would rightly drop a client we leave silent.
constexpr std::size_t kReadBufferSize = 64 * 1024;
constexpr int kReadsPerEvent = 4;
constexpr std::size_t kWriteBudget = 1 << 20;
constexpr auto kMaxTurn = std::chrono::milliseconds(50);

bool would_block(int e) {
  return e == EAGAIN || e == EWOULDBLOCK;
}

}  // namespace

Client::~Client() = default;

void Client::send(std::string_view bytes) {
  if (state_ == State::closed || write_failed_ || bytes.empty()) return;
  if (out_offset_ > (1u << 20) && out_offset_ * 2 > outbox_.size()) {
    outbox_.erase(0, out_offset_);
    out_offset_ = 0;
  }
  outbox_.append(bytes);
  if (state_ == State::open) flush();
}

void Client::close() {
  if (state_ == State::closed) return;
  end(0, false);
}

void Client::finish() {
  if (state_ != State::open || !fd_) return close();
  ::shutdown(fd_.get(), SHUT_WR);
}

void Client::reset() {
  if (state_ == State::closed) return;
  if (fd_) {
    const linger hard{1, 0};
    ::setsockopt(fd_.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard);
  }
  end(0, false);
}

void Client::set_reading(bool on) {
  reading_ = on;
  if (state_ == State::open) update_interest();
}

void Client::wake_after(Clock::duration delay) {
  ++timer_token_;
  loop_->timers_.push({Clock::now() + delay, index_, timer_token_});
}

void Client::start_connect() {
  state_ = State::connecting;
  ++loop_->connecting_;
  fd_.reset(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd_) return end(errno, false);
  const int one = 1;
  ::setsockopt(fd_.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (socket_buffers_ > 0) {
    for (int option : {SO_SNDBUF, SO_RCVBUF}) {
      ::setsockopt(fd_.get(), SOL_SOCKET, option, &socket_buffers_, sizeof socket_buffers_);
    }
  }
  if (::connect(fd_.get(), reinterpret_cast<const sockaddr*>(&server_), sizeof server_) != 0 &&
      errno != EINPROGRESS) {
    return end(errno, false);
  }
  // Completion (even an immediate one) is reported as EPOLLOUT.
  if (!loop_->watch(*this, EPOLLOUT)) return end(errno, false);
}

void Client::finish_connect() {
  int error = 0;
  socklen_t length = sizeof error;
  if (::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
  if (error != 0) return end(error, true);
  --loop_->connecting_;
  ++loop_->open_;
  state_ = State::open;
  connected_ = true;
  connected_at_ = Clock::now();
  on_connected();
  if (state_ != State::open) return;
  flush();
  if (state_ == State::open) update_interest();
}

void Client::handle(std::uint32_t events) {
  if (state_ == State::connecting) {
    if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) finish_connect();
    return;
  }
  if (state_ != State::open) return;
  if (reading_ && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) read();
  if (state_ == State::open && (events & EPOLLOUT)) flush();
  if (state_ == State::open && !reading_ && (events & (EPOLLERR | EPOLLHUP))) {
    int error = 0;
    socklen_t length = sizeof error;
    ::getsockopt(fd_.get(), SOL_SOCKET, SO_ERROR, &error, &length);
    return end(error != 0 ? error : EPIPE, true);
  }
  if (state_ == State::open) update_interest();
}

void Client::read() {
  std::vector<char>& buffer = loop_->read_buffer_;
  for (int i = 0; i < kReadsPerEvent && state_ == State::open && reading_; ++i) {
    const ssize_t n = ::recv(fd_.get(), buffer.data(), buffer.size(), 0);
    if (n > 0) {
      received_ += static_cast<std::uint64_t>(n);
      on_data({buffer.data(), static_cast<std::size_t>(n)});
      continue;
    }
    if (n == 0) return end(0, true);
    if (errno == EINTR) continue;
    if (!would_block(errno)) end(errno, true);
    return;
  }
}

void Client::flush() {
  if (in_flush_ || state_ != State::open || write_failed_) return;
  in_flush_ = true;
  std::size_t budget = kWriteBudget;
  while (state_ == State::open) {
    if (out_offset_ == outbox_.size()) {
      outbox_.clear();
      out_offset_ = 0;
      on_drained();  // may queue more (send() only appends while we are here)
      if (state_ != State::open || outbox_.empty()) break;
    }
    if (budget == 0) break;
    const std::size_t want = std::min(outbox_.size() - out_offset_, budget);
    const ssize_t n = ::send(fd_.get(), outbox_.data() + out_offset_, want, MSG_NOSIGNAL);
    if (n > 0) {
      out_offset_ += static_cast<std::size_t>(n);
      sent_ += static_cast<std::uint64_t>(n);
      budget -= static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && would_block(errno)) break;
    // The server is gone for writing. Keep reading what it sent before: that ends the client.
    const int error = errno;
    write_error_ = error;
    write_failed_ = true;
    outbox_.clear();
    out_offset_ = 0;
    if (!reading_) end(error, true);
    break;
  }
  in_flush_ = false;
  if (state_ == State::open) update_interest();
}

void Client::update_interest() {
  const std::uint32_t want =
      (reading_ ? EPOLLIN : 0u) | (!write_failed_ && queued() > 0 ? EPOLLOUT : 0u);
  if (want != interest_) loop_->modify(*this, want);
}

void Client::end(int error, bool by_peer) {
  if (state_ == State::closed) return;
  if (state_ == State::connecting) {
    --loop_->connecting_;
    ++loop_->connect_failures_;
    if (loop_->first_connect_error_ == 0) loop_->first_connect_error_ = error;
  } else if (state_ == State::open) {
    --loop_->open_;
  }
  ++loop_->closed_;
  state_ = State::closed;
  fd_.reset();  // epoll forgets a descriptor when it closes
  std::string().swap(outbox_);
  out_offset_ = 0;
  end_error_ = error;
  ended_by_peer_ = by_peer;
  closed_at_ = Clock::now();
  if (by_peer || !connected_) on_closed(error);
}

ClientLoop::ClientLoop(std::size_t max_connecting)
    : epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      read_buffer_(kReadBufferSize),
      max_connecting_(std::max<std::size_t>(max_connecting, 1)) {}

ClientLoop::~ClientLoop() = default;

void ClientLoop::adopt(std::unique_ptr<Client> client, const sockaddr_in& server) {
  client->loop_ = this;
  client->server_ = server;
  client->index_ = clients_.size();
  waiting_.push_back(client->index_);
  clients_.push_back(std::move(client));
}

bool ClientLoop::watch(Client& client, std::uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = client.index_;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, client.fd_.get(), &event) != 0) return false;
  client.interest_ = events;
  return true;
}

void ClientLoop::modify(Client& client, std::uint32_t events) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = client.index_;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, client.fd_.get(), &event) == 0) {
    client.interest_ = events;
  }
}

void ClientLoop::start_waiting() {
  while (!waiting_.empty() && connecting_ < max_connecting_) {
    const std::size_t index = waiting_.front();
    waiting_.pop_front();
    clients_[index]->start_connect();
  }
}

void ClientLoop::run_due_timers() {
  const auto now = Clock::now();
  while (!timers_.empty() && timers_.top().when <= now) {
    const Timer timer = timers_.top();
    timers_.pop();
    Client& client = *clients_[timer.index];
    if (client.timer_token_ == timer.token && client.state_ == Client::State::open) {
      client.on_timer();
    }
  }
}

bool ClientLoop::run_until(const std::function<bool()>& done, Clock::duration limit) {
  const auto deadline = Clock::now() + limit;
  epoll_event events[1024];
  for (;;) {
    start_waiting();
    if (done()) return true;
    const auto now = Clock::now();
    if (now >= deadline) return false;
    auto wait = std::min<Clock::duration>(deadline - now, kMaxTurn);
    if (!timers_.empty()) wait = std::min<Clock::duration>(wait, timers_.top().when - now);
    const auto wait_ms =
        std::max<long long>(0, std::chrono::ceil<std::chrono::milliseconds>(wait).count());
    const int n = ::epoll_wait(epoll_.get(), events, 1024, static_cast<int>(wait_ms));
    const auto turn = Clock::now();
    for (int i = 0; i < n; ++i) clients_[events[i].data.u64]->handle(events[i].events);
    run_due_timers();
    longest_turn_ = std::max(longest_turn_, Clock::now() - turn);
  }
}

}  // namespace test
