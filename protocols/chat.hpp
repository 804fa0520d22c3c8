// Chat: a line protocol for nc/telnet with nicks, rooms and private messages. All state shared
// between sessions (names, rooms, membership, private delivery) goes through the Hub, so it runs
// under every concurrency model, fork included.
//
// Wire format. Clients end lines in "\n" or "\r\n"; the server ends every line in "\n". Bytes
// are bytes: no encoding is checked, but telnet commands (IAC ...) and stray IAC bytes are
// removed from every line, and a line with a control character (C0 other than TAB, or DEL) is
// refused with "ERR control characters are not allowed", so no line can erase, move the cursor
// or forge server output on other users' terminals. Lines over max-line bytes (4096) are
// answered with "ERR line too long" and dropped up to their "\n"; the connection stays usable.
//
// What the server sends, by first characters:
//   OK ...            the reply to a command; every command line gets exactly one reply
//   ERR REASON        (OK/ERR is followed by ' ' or the end of the line); ERR also answers
//                     text sent before /nick and over-long lines
//   * TEXT            a notice: the greeting, "* NAME joined", "* NAME left",
//                     "* NAME dropped (too slow)", "* OLD is now NEW"
//   NICK: TEXT        a line NICK said in your room (nicks never contain ' ', '*' or '[')
//   [private] NICK: TEXT  a line NICK sent to you alone
//
// Commands (case-insensitive) and their replies:
//   /nick NAME      OK nick NAME, joined lobby   (first nick; you enter the lobby)
//                   OK nick NAME                 (renamed; your room sees "* OLD is now NEW")
//   /join ROOM      OK joined ROOM               (old room sees "* NAME left", new "* NAME joined")
//   /rooms          OK 2 rooms: dev(1) lobby(3)  (rooms with members, sorted, member count;
//                   "OK 1 room: lobby(3)", "OK 0 rooms")
//   /who            OK 3 in lobby: alice bob carol  (nicks in your room, sorted)
//   /msg NICK TEXT  OK sent to NICK              (NICK receives "[private] YOU: TEXT")
//   /help           OK commands: ...
//   /quit           OK bye                       (then the server closes the connection)
// NAME and ROOM are 1 to 32 of A-Z a-z 0-9 _ -, compared ignoring (ASCII) case: "Alice" and
// "alice" are one nick, "Dev" and "dev" one room; the Hub does the comparing. What users see keeps
// the spelling of its owner: a nick as its holder last set it (in notices, lines, private
// messages and /who), a room as the user who created it spelled it, for as long as it has members
// ("/join DEV" answers "OK joined Dev" if Dev exists; /rooms and /who say "Dev"; a lobby emptied
// and created again by "/join Lobby" is "Lobby" to later nicks). "/nick ALICE" when you are alice
// is a rename. A line starting with "//" is text: "//etc/hosts" says "/etc/hosts" to the room.
// /who lists are sorted ignoring case. Any other line starting with '/' gets
// "ERR unknown command ..."; other non-empty lines go to the rest of your room; empty lines are
// ignored. Everything except /nick, /rooms, /help and /quit needs a nick first.
//
// Configuration (registry args, comma-separated): lobby=ROOM (default "lobby"),
// max-line=BYTES (64..65536, default 4096).
#pragma once

#include <cstddef>
#include <initializer_list>
#include <memory>
#include <string>
#include <string_view>

#include "protocols/line_splitter.hpp"
#include "reactor/session.hpp"

namespace reactor::protocols {

// Nicks and room names: 1 to 32 of [A-Za-z0-9_-].
bool is_valid_chat_name(std::string_view name) noexcept;

struct ChatConfig {
  std::string lobby = "lobby";
  std::size_t max_line = LineSplitter::kDefaultMaxLine;
};

// Parses registry args ("lobby=dev,max-line=1024"); false with a reason in `error` if bad.
bool parse_chat_config(std::string_view args, ChatConfig& config, std::string& error);

class ChatSession final : public Session {
 public:
  ChatSession(Hub& hub, const ChatConfig& config);

  void on_open(Peer& peer) override;
  // Consumes everything: unfinished lines are kept inside, at most max-line + 1 bytes.
  std::size_t on_data(Peer& peer, std::span<const std::byte> bytes) override;
  // An unterminated last line is handled as a line, then the connection closes.
  void on_eof(Peer& peer) override;
  // Announces the departure to the room and forgets the peer; the peer is only a Hub key here.
  void on_close(std::error_code reason) override;

 private:
  void handle_line(Peer& peer, std::string_view line);
  void handle_command(Peer& peer, std::string_view command, std::string_view args);
  void set_nick(Peer& peer, std::string_view name);
  void join(Peer& peer, std::string_view room);
  // Joins `room`, learns its listed spelling and tells the room.
  void enter(Peer& peer, std::string_view room);
  void list_rooms(Peer& peer);
  void list_members(Peer& peer);
  void send_private(Peer& peer, std::string_view args);
  void say(Peer& peer, std::string_view text);
  void send_line(Peer& peer, std::initializer_list<std::string_view> parts);
  // Builds one output line from parts in out_ and returns it as bytes.
  std::span<const std::byte> compose(std::initializer_list<std::string_view> parts);

  Hub& hub_;
  std::string lobby_;
  LineSplitter lines_;
  Peer* peer_ = nullptr;  // from on_open; after on_close starts, only a key for the Hub
  std::string nick_;      // empty until /nick succeeds; as the user spelled it
  std::string room_;      // empty until the first nick; as the room's creator spelled it
  std::string out_;       // reused for every line we send
  std::string line_;      // an input line without its telnet commands
  bool quitting_ = false;
};

class ChatProtocol final : public Protocol {
 public:
  explicit ChatProtocol(ChatConfig config = {}) : config_(std::move(config)) {}
  std::unique_ptr<Session> open(Hub& hub) override;
  // A client that falls 1 MiB behind is dropped (Errc::too_slow) instead of slowing the room.
  std::size_t max_outbox() const override { return kMaxOutbox; }
  static constexpr std::size_t kMaxOutbox = 1u << 20;

 private:
  ChatConfig config_;
};

inline constexpr ProtocolInfo kChatInfo{
    "chat", "line chat for nc/telnet: /nick, /join, /rooms, /who, /msg, /quit", kTcp | kUnixStream,
    true};

// Registry factory; args as for parse_chat_config.
std::unique_ptr<Protocol> make_chat(std::string_view args, std::string& error);

}  // namespace reactor::protocols
