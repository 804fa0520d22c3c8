// ClientLoop and Client: thousands of nonblocking TCP clients driven by one epoll loop in the
// test process, without threads. A Client subclass says what to send and checks what arrives;
// the loop connects (at most max_connecting handshakes at a time), reads, writes with a
// per-client outbox, runs per-client timers, and bounds every run in time.
//
// Lifetime: the loop owns its clients and keeps them, closed or not, until it is destroyed, so
// a test reads results from them at the end. A Client reference stays valid as long as the loop.
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <queue>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "reactor/fd.hpp"

namespace test {

using Clock = std::chrono::steady_clock;

class ClientLoop;

class Client {
 public:
  virtual ~Client();

  // Hooks. on_closed hears every end the client did not ask for: EOF from the server (error 0),
  // a reset or other error (errno), or a failed connect (connected() is false then).
  virtual void on_connected() {}
  virtual void on_data(std::string_view bytes) { (void)bytes; }
  // Everything queued has gone to the kernel; a streaming client queues more here.
  virtual void on_drained() {}
  virtual void on_timer() {}
  virtual void on_closed(int error) { (void)error; }

  // Queues bytes and writes what the socket takes now; the rest goes as it drains.
  void send(std::string_view bytes);
  // Closes now (what the kernel holds is still delivered; our unsent outbox is dropped).
  void close();
  // Closes with SO_LINGER {1, 0}: the server sees a reset.
  void reset();
  // Half-closes (shutdown SHUT_WR) and keeps reading: the server sees EOF, answers what it still
  // owes and closes, and the client ends on that EOF having read everything, so the server sees
  // an orderly close (close() with unread bytes in our buffer would make the kernel send a
  // reset, which the server counts as a failed connection).
  void finish();
  // A client that does not read is a slow reader: its server's output piles up.
  void set_reading(bool on);
  // One-shot timer; a new call replaces the pending one.
  void wake_after(Clock::duration delay);
  // SO_SNDBUF and SO_RCVBUF for the socket, set before it connects; 0 = the kernel's default.
  void set_socket_buffers(int bytes) noexcept { socket_buffers_ = bytes; }

  bool connecting() const noexcept { return state_ == State::connecting; }
  bool is_open() const noexcept { return state_ == State::open; }
  bool closed() const noexcept { return state_ == State::closed; }
  bool connected() const noexcept { return connected_; }  // the handshake completed (ever)
  bool ended_by_peer() const noexcept { return ended_by_peer_; }
  int end_error() const noexcept { return end_error_; }
  // The errno of a failed write (the server reset or closed), 0 if none failed.
  int write_error() const noexcept { return write_error_; }
  std::size_t queued() const noexcept { return outbox_.size() - out_offset_; }
  std::uint64_t bytes_sent() const noexcept { return sent_; }
  std::uint64_t bytes_received() const noexcept { return received_; }
  Clock::time_point connected_at() const noexcept { return connected_at_; }
  Clock::time_point closed_at() const noexcept { return closed_at_; }
  std::size_t index() const noexcept { return index_; }
  ClientLoop& loop() const noexcept { return *loop_; }

 private:
  friend class ClientLoop;
  enum class State : std::uint8_t { waiting, connecting, open, closed };

  void start_connect();
  void handle(std::uint32_t events);
  void finish_connect();
  void read();
  void flush();
  void update_interest();
  void end(int error, bool by_peer);

  ClientLoop* loop_ = nullptr;
  sockaddr_in server_{};
  std::size_t index_ = 0;
  reactor::Fd fd_;
  std::string outbox_;
  std::size_t out_offset_ = 0;
  std::uint64_t sent_ = 0;
  std::uint64_t received_ = 0;
  std::uint64_t timer_token_ = 0;
  Clock::time_point connected_at_{};
  Clock::time_point closed_at_{};
  std::uint32_t interest_ = 0;
  int socket_buffers_ = 0;
  int end_error_ = 0;
  int write_error_ = 0;
  State state_ = State::waiting;
  bool connected_ = false;
  bool ended_by_peer_ = false;
  bool reading_ = true;
  bool write_failed_ = false;
  bool in_flush_ = false;
};

class ClientLoop {
 public:
  explicit ClientLoop(std::size_t max_connecting = 256);
  ~ClientLoop();
  ClientLoop(const ClientLoop&) = delete;
  ClientLoop& operator=(const ClientLoop&) = delete;

  // Adds a client for `server`; it connects as soon as a handshake slot is free.
  template <class T, class... Args>
  T& add(const sockaddr_in& server, Args&&... args) {
    auto client = std::make_unique<T>(std::forward<Args>(args)...);
    T& ref = *client;
    adopt(std::move(client), server);
    return ref;
  }

  // Runs until done() holds (checked after every turn, at least every 50 ms) or `limit` has
  // passed. Returns done().
  bool run_until(const std::function<bool()>& done, Clock::duration limit);
  void run_for(Clock::duration duration) {
    run_until([] { return false; }, duration);
  }

  std::size_t size() const noexcept { return clients_.size(); }
  Client& client(std::size_t index) const noexcept { return *clients_[index]; }
  std::size_t open_count() const noexcept { return open_; }
  // Not yet connected: waiting for a slot or in the handshake.
  std::size_t pending_count() const noexcept { return waiting_.size() + connecting_; }
  std::size_t closed_count() const noexcept { return closed_; }
  std::size_t connect_failures() const noexcept { return connect_failures_; }
  // The first connect errno seen (0 if none), for messages.
  int first_connect_error() const noexcept { return first_connect_error_; }
  // The longest time spent handling one batch of events and timers: how long a client may have
  // waited for its turn because of us, not the server.
  Clock::duration longest_turn() const noexcept { return longest_turn_; }

 private:
  friend class Client;
  struct Timer {
    Clock::time_point when;
    std::size_t index;
    std::uint64_t token;
    bool operator>(const Timer& other) const noexcept { return when > other.when; }
  };

  void adopt(std::unique_ptr<Client> client, const sockaddr_in& server);
  void start_waiting();
  void run_due_timers();
  bool watch(Client& client, std::uint32_t events);
  void modify(Client& client, std::uint32_t events);

  reactor::Fd epoll_;
  std::vector<std::unique_ptr<Client>> clients_;
  std::deque<std::size_t> waiting_;
  std::priority_queue<Timer, std::vector<Timer>, std::greater<>> timers_;
  std::vector<char> read_buffer_;
  std::size_t max_connecting_;
  std::size_t connecting_ = 0;
  std::size_t open_ = 0;
  std::size_t closed_ = 0;
  std::size_t connect_failures_ = 0;
  int first_connect_error_ = 0;
  Clock::duration longest_turn_{};
};

}  // namespace test
