#include "reactor/stream_core.hpp"

#include "reactor/hot.hpp"

namespace reactor {

namespace {

// Looked up once: comparing a category is then one pointer compare, not a call per category.
const std::error_category& kReactor = reactor_category();
const std::error_category& kSystem = std::system_category();

}  // namespace

REACTOR_HOT std::int32_t StreamCore::encode_error(std::error_code ec) noexcept {
  const std::error_category& category = ec.category();
  if (&category == &kSystem) return ec.value();
  if (&category == &kReactor) return -ec.value();
  if (category == std::generic_category()) return ec.value();
  return EIO;  // no other category reaches a stream's close
}

REACTOR_HOT std::error_code StreamCore::decode_error(std::int32_t code) noexcept {
  if (code < 0) return {-code, kReactor};
  return {code, kSystem};
}

}  // namespace reactor
