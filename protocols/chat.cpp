#include "protocols/chat.hpp"

#include <charconv>

#include "protocols/options.hpp"
#include "reactor/local_hub.hpp"

namespace reactor::protocols {
namespace {

constexpr std::size_t kMaxNameLength = 32;
constexpr std::size_t kMinMaxLine = 64;
constexpr std::size_t kMaxMaxLine = 65536;

constexpr std::string_view kGreeting =
    "* welcome to reactor chat; choose a nick with /nick NAME (/help lists commands)\n";
constexpr std::string_view kHelp =
    "OK commands: /nick NAME, /join ROOM, /rooms, /who, /msg NICK TEXT, /help, /quit; "
    "//TEXT says /TEXT\n";
constexpr std::string_view kNeedNick = "ERR set a nick first: /nick NAME\n";

bool is_blank(char c) noexcept {
  return c == ' ' || c == '\t';
}

std::string_view trim(std::string_view text) noexcept {
  while (!text.empty() && is_blank(text.front())) text.remove_prefix(1);
  while (!text.empty() && is_blank(text.back())) text.remove_suffix(1);
  return text;
}

// Splits "word rest" at the first blank; `rest` loses its leading blanks.
std::pair<std::string_view, std::string_view> split_word(std::string_view text) noexcept {
  std::size_t end = 0;
  while (end < text.size() && !is_blank(text[end])) ++end;
  std::string_view rest = text.substr(end);
  while (!rest.empty() && is_blank(rest.front())) rest.remove_prefix(1);
  return {text.substr(0, end), rest};
}

// Telnet commands: IAC (0xFF) then a command byte; WILL/WONT/DO/DONT take an option byte, SB
// runs to IAC SE. They are the client program's protocol, not text (0xFF is never UTF-8).
constexpr unsigned char kIac = 0xff;
constexpr unsigned char kSe = 0xf0;
constexpr unsigned char kSb = 0xfa;
constexpr unsigned char kWill = 0xfb;
constexpr unsigned char kFirstCommand = 0xf0;

// `line` without its telnet commands and stray IAC bytes, built in `out`.
std::string_view strip_telnet(std::string_view line, std::string& out) {
  out.clear();
  std::size_t i = 0;
  while (i < line.size()) {
    if (static_cast<unsigned char>(line[i]) != kIac) {
      out += line[i++];
      continue;
    }
    if (i + 1 == line.size()) break;  // IAC at the end: dropped
    const auto command = static_cast<unsigned char>(line[i + 1]);
    if (command >= kWill && command != kIac) {
      i += 3;  // WILL, WONT, DO, DONT and their option
    } else if (command == kSb) {
      constexpr char kEnd[] = {static_cast<char>(kIac), static_cast<char>(kSe)};
      const std::size_t end = line.find(std::string_view(kEnd, 2), i + 2);
      i = end == std::string_view::npos ? line.size() : end + 2;
    } else if (command >= kFirstCommand) {
      i += 2;  // a two-byte command (IP, AYT, ...) or IAC IAC
    } else {
      i += 1;  // a stray IAC before text
    }
  }
  return out;
}

// C0 controls other than TAB, and DEL: what would let a line move the cursor, erase, ring or
// forge output on other users' terminals.
bool has_control(std::string_view line) noexcept {
  for (const char c : line) {
    const auto b = static_cast<unsigned char>(c);
    if ((b < 0x20 && b != '\t') || b == 0x7f) return true;
  }
  return false;
}

void append_number(std::string& out, std::size_t n) {
  char digits[24];
  const auto [end, ec] = std::to_chars(digits, digits + sizeof digits, n);
  out.append(digits, end);
}

}  // namespace

bool is_valid_chat_name(std::string_view name) noexcept {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  for (const char c : name) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-';
    if (!ok) return false;
  }
  return true;
}

bool parse_chat_config(std::string_view args, ChatConfig& config, std::string& error) {
  for (reactor::protocols::Option option; reactor::protocols::next_option(args, option);) {
    const std::string_view key = option.key;
    const std::string_view value = option.value;
    if (key == "lobby") {
      if (!is_valid_chat_name(value)) {
        error = "lobby=ROOM needs 1 to 32 of A-Z a-z 0-9 _ -";
        return false;
      }
      config.lobby = value;
    } else if (key == "max-line") {
      std::size_t n = 0;
      const auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), n);
      if (ec != std::errc{} || end != value.data() + value.size() || n < kMinMaxLine ||
          n > kMaxMaxLine) {
        error = "max-line=BYTES needs a number from 64 to 65536";
        return false;
      }
      config.max_line = n;
    } else {
      error = "unknown option '";
      error += key;
      error += "' (known: lobby=ROOM, max-line=BYTES)";
      return false;
    }
  }
  return true;
}

ChatSession::ChatSession(Hub& hub, const ChatConfig& config)
    : hub_(hub), lobby_(config.lobby), lines_(config.max_line) {}

void ChatSession::on_open(Peer& peer) {
  peer_ = &peer;
  peer.send(kGreeting);
}

std::size_t ChatSession::on_data(Peer& peer, std::span<const std::byte> bytes) {
  peer_ = &peer;
  const std::size_t size = bytes.size();
  while (!quitting_) {
    const auto event = lines_.next(bytes);
    if (!event) break;
    if (event->kind == LineSplitter::Event::Kind::too_long) {
      peer.send("ERR line too long\n");
    } else {
      handle_line(peer, event->text);
    }
  }
  return size;
}

void ChatSession::on_eof(Peer& peer) {
  if (!quitting_) {
    if (const auto last = lines_.finish()) handle_line(peer, *last);
  }
  peer.close();
}

void ChatSession::on_close(std::error_code reason) {
  if (peer_ == nullptr) return;
  hub_.forget(*peer_);
  if (!room_.empty()) {
    const std::string_view why =
        reason == make_error_code(Errc::too_slow) ? " dropped (too slow)" : " left";
    hub_.publish(room_, compose({"* ", nick_, why}), nullptr);
  }
  peer_ = nullptr;
}

void ChatSession::handle_line(Peer& peer, std::string_view line) {
  if (line.find(static_cast<char>(kIac)) != std::string_view::npos) {
    line = strip_telnet(line, line_);
  }
  if (line.empty()) return;
  if (has_control(line)) return peer.send("ERR control characters are not allowed (TAB is)\n");
  if (line.front() != '/') {
    say(peer, line);
    return;
  }
  if (line.starts_with("//")) {  // the escape for text that starts with '/'
    say(peer, line.substr(1));
    return;
  }
  const auto [command, args] = split_word(line.substr(1));
  handle_command(peer, command, args);
}

void ChatSession::handle_command(Peer& peer, std::string_view command, std::string_view args) {
  const auto is = [command](std::string_view name) { return same_name(command, name); };
  if (is("nick")) {
    set_nick(peer, trim(args));
  } else if (is("rooms")) {
    list_rooms(peer);
  } else if (is("help")) {
    peer.send(kHelp);
  } else if (is("quit")) {
    peer.send("OK bye\n");
    quitting_ = true;
    peer.close();
  } else if (is("join") || is("who") || is("msg")) {
    if (nick_.empty()) {
      peer.send(kNeedNick);
    } else if (is("join")) {
      join(peer, trim(args));
    } else if (is("who")) {
      list_members(peer);
    } else {
      send_private(peer, args);
    }
  } else {
    peer.send("ERR unknown command (try /help)\n");
  }
}

void ChatSession::set_nick(Peer& peer, std::string_view name) {
  if (name.empty()) return peer.send("ERR usage: /nick NAME\n");
  if (!is_valid_chat_name(name)) {
    return peer.send("ERR invalid nick: use 1 to 32 of A-Z a-z 0-9 _ -\n");
  }
  if (name == nick_) return send_line(peer, {"OK nick ", name});
  // The Hub compares ignoring case: a new spelling of one's own nick is claimed again, which
  // succeeds and makes it the spelling /who shows.
  if (!hub_.claim_name(name, peer)) return send_line(peer, {"ERR nick taken: ", name});

  if (nick_.empty()) {
    nick_ = name;
    enter(peer, lobby_);
    send_line(peer, {"OK nick ", nick_, ", joined ", room_});
    return;
  }
  hub_.publish(room_, compose({"* ", nick_, " is now ", name}), &peer);
  nick_ = name;
  hub_.set_farewell(room_, compose({"* ", nick_, " left"}), peer);
  send_line(peer, {"OK nick ", nick_});
}

void ChatSession::join(Peer& peer, std::string_view room) {
  if (room.empty()) return peer.send("ERR usage: /join ROOM\n");
  if (!is_valid_chat_name(room)) {
    return peer.send("ERR invalid room: use 1 to 32 of A-Z a-z 0-9 _ -\n");
  }
  if (same_name(room, room_)) return send_line(peer, {"OK joined ", room_});
  hub_.leave(room_, peer);
  hub_.publish(room_, compose({"* ", nick_, " left"}), nullptr);
  enter(peer, room);
  send_line(peer, {"OK joined ", room_});
}

void ChatSession::enter(Peer& peer, std::string_view room) {
  hub_.join(room, peer);
  // Shown as its creator spelled it, which the Hub's list knows (we are in it: it is listed).
  room_ = room;
  for (const RoomInfo& info : hub_.rooms()) {
    if (same_name(info.name, room)) room_ = info.name;
  }
  hub_.publish(room_, compose({"* ", nick_, " joined"}), &peer);
  hub_.set_farewell(room_, compose({"* ", nick_, " left"}), peer);
}

void ChatSession::list_rooms(Peer& peer) {
  const std::vector<RoomInfo> rooms = hub_.rooms();
  out_.assign("OK ");
  append_number(out_, rooms.size());
  out_ += rooms.size() == 1 ? " room" : " rooms";
  for (std::size_t i = 0; i < rooms.size(); ++i) {
    out_ += i == 0 ? ": " : " ";
    out_ += rooms[i].name;
    out_ += '(';
    append_number(out_, rooms[i].members);
    out_ += ')';
  }
  out_ += '\n';
  peer.send(out_);
}

void ChatSession::list_members(Peer& peer) {
  const std::vector<std::string> names = hub_.members(room_);
  out_.assign("OK ");
  append_number(out_, names.size());
  out_ += " in ";
  out_ += room_;
  for (std::size_t i = 0; i < names.size(); ++i) {
    out_ += i == 0 ? ": " : " ";
    out_ += names[i];
  }
  out_ += '\n';
  peer.send(out_);
}

void ChatSession::send_private(Peer& peer, std::string_view args) {
  const auto [target, text] = split_word(args);
  if (target.empty() || text.empty()) return peer.send("ERR usage: /msg NICK TEXT\n");
  if (!is_valid_chat_name(target) ||
      !hub_.send_to(target, compose({"[private] ", nick_, ": ", text}))) {
    return peer.send("ERR no such nick\n");
  }
  send_line(peer, {"OK sent to ", target});
}

void ChatSession::say(Peer& peer, std::string_view text) {
  if (nick_.empty()) return peer.send(kNeedNick);
  hub_.publish(room_, compose({nick_, ": ", text}), &peer);
}

void ChatSession::send_line(Peer& peer, std::initializer_list<std::string_view> parts) {
  peer.send(compose(parts));
}

std::span<const std::byte> ChatSession::compose(std::initializer_list<std::string_view> parts) {
  out_.clear();
  for (const std::string_view part : parts) out_ += part;
  out_ += '\n';
  return as_bytes(out_);
}

std::unique_ptr<Session> ChatProtocol::open(Hub& hub) {
  return std::make_unique<ChatSession>(hub, config_);
}

std::unique_ptr<Protocol> make_chat(std::string_view args, std::string& error) {
  ChatConfig config;
  if (!parse_chat_config(args, config, error)) return nullptr;
  return std::make_unique<ChatProtocol>(std::move(config));
}

}  // namespace reactor::protocols
