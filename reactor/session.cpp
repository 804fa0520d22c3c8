#include "reactor/session.hpp"

#include <cassert>
#include <cstdint>

#include "reactor/hot.hpp"

namespace reactor {
namespace {
// The innermost lender on this thread. Initial-exec: read and written inline, in the thread's own
// block (for a forked child, a page that fork() has it write anyway).
[[gnu::tls_model("initial-exec")]] thread_local SessionStorage* t_lender = nullptr;
}  // namespace

REACTOR_HOT SessionStorage::SessionStorage(std::span<std::byte> bytes) noexcept
    : outer_(t_lender), bytes_(bytes) {
  t_lender = this;
}

REACTOR_HOT SessionStorage::~SessionStorage() {
  assert(!taken_ && "a session made in lent storage outlived its lender");
  t_lender = outer_;
}

REACTOR_HOT void* SessionStorage::take(std::size_t size, std::size_t align) noexcept {
  SessionStorage* lender = t_lender;
  if (lender == nullptr || lender->taken_ || size > lender->bytes_.size()) return nullptr;
  void* p = lender->bytes_.data();
  if (reinterpret_cast<std::uintptr_t>(p) % align != 0) return nullptr;
  lender->taken_ = true;
  return p;
}

REACTOR_HOT bool SessionStorage::give_back(void* p) noexcept {
  for (SessionStorage* lender = t_lender; lender != nullptr; lender = lender->outer_) {
    if (lender->taken_ && p == lender->bytes_.data()) {
      lender->taken_ = false;
      return true;
    }
  }
  return false;
}

}  // namespace reactor
