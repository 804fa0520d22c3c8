#include "protocols/line_splitter.hpp"

namespace reactor::protocols {
namespace {

std::string_view as_chars(std::span<const std::byte> bytes) noexcept {
  return {reinterpret_cast<const char*>(bytes.data()), bytes.size()};
}

}  // namespace

std::optional<LineSplitter::Event> LineSplitter::next(std::span<const std::byte>& input) {
  if (partial_lent_) {
    partial_.clear();
    partial_lent_ = false;
  }
  while (!input.empty()) {
    const std::string_view text = as_chars(input);
    const std::size_t newline = text.find('\n');

    if (discarding_) {
      if (newline == std::string_view::npos) {
        input = {};
        return std::nullopt;
      }
      input = input.subspan(newline + 1);
      discarding_ = false;
      continue;
    }

    if (newline == std::string_view::npos) {
      // Keep the piece unless the line can no longer fit: max_line bytes plus a '\r' that may
      // turn out to be the first half of "\r\n".
      const std::size_t length = partial_.size() + text.size();
      if (length > max_line_ + 1 || (length == max_line_ + 1 && text.back() != '\r')) {
        partial_.clear();
        discarding_ = true;
        input = {};
        return Event{Event::Kind::too_long, {}};
      }
      partial_.append(text);
      input = {};
      return std::nullopt;
    }

    input = input.subspan(newline + 1);
    const std::string_view head = text.substr(0, newline);
    const char last = !head.empty() ? head.back() : (!partial_.empty() ? partial_.back() : '\0');
    const std::size_t length = partial_.size() + head.size() - (last == '\r' ? 1 : 0);
    if (length > max_line_) {
      partial_.clear();
      return Event{Event::Kind::too_long, {}};
    }
    std::string_view line = head;
    if (!partial_.empty()) {
      partial_.append(head);
      partial_lent_ = true;
      line = partial_;
    }
    if (last == '\r') line.remove_suffix(1);
    return Event{Event::Kind::line, line};
  }
  return std::nullopt;
}

std::optional<std::string_view> LineSplitter::finish() {
  if (partial_lent_) {
    partial_.clear();
    partial_lent_ = false;
  }
  if (discarding_) {
    discarding_ = false;
    return std::nullopt;
  }
  if (partial_.empty()) return std::nullopt;
  partial_lent_ = true;
  std::string_view line = partial_;
  if (line.back() == '\r') line.remove_suffix(1);
  return line;
}

}  // namespace reactor::protocols
