#include "reactor/slab.hpp"

#include <sys/mman.h>

#include <new>

namespace reactor {
namespace {

constexpr bool kCarve = Slab::kCarves;  // let the sanitizers see every use after free

constexpr std::size_t kHeaderSize = 64;  // the Block header, rounded up

}  // namespace

// At the start of each block (blocks are aligned to their size: an object finds its block by
// masking its address).
struct Slab::Block {
  Block* prev;
  Block* next;
  void* free;            // freed objects, each holding the next one's address
  std::uint32_t used;    // objects handed out and not freed
  std::uint32_t carved;  // objects ever handed out from the untouched rest (pages stay unmapped
                         // until carved)
};

Slab::Slab(std::size_t object_size) noexcept
    : object_size_(static_cast<std::uint32_t>(
          object_size < sizeof(void*) ? sizeof(void*) : (object_size + 7) & ~std::size_t{7})),
      per_block_(static_cast<std::uint32_t>((kBlockSize - kHeaderSize) / object_size_)) {}

Slab::~Slab() {
  while (open_ != nullptr) {
    Block* b = open_;
    unlink(b);
    ::munmap(b, kBlockSize);
  }
}

void Slab::link(Block* b) noexcept {
  b->prev = nullptr;
  b->next = open_;
  if (open_ != nullptr) open_->prev = b;
  open_ = b;
}

void Slab::unlink(Block* b) noexcept {
  if (b->prev != nullptr) b->prev->next = b->next;
  if (b->next != nullptr) b->next->prev = b->prev;
  if (open_ == b) open_ = b->next;
}

void* Slab::allocate() noexcept {
  static_assert(sizeof(Block) <= kHeaderSize);
  if (!kCarve) {
    void* p = ::operator new(object_size_, std::nothrow);
    if (p != nullptr) ++live_;
    return p;
  }
  if (open_ == nullptr) {
    // Twice the size, then the unaligned ends cut off: one aligned block.
    void* raw =
        ::mmap(nullptr, 2 * kBlockSize, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (raw == MAP_FAILED) return nullptr;
    const auto start = reinterpret_cast<std::uintptr_t>(raw);
    const std::uintptr_t aligned = (start + kBlockSize - 1) & ~(kBlockSize - 1);
    if (aligned > start) ::munmap(raw, aligned - start);
    const std::uintptr_t end = start + 2 * kBlockSize;
    if (end > aligned + kBlockSize) {
      ::munmap(reinterpret_cast<void*>(aligned + kBlockSize), end - aligned - kBlockSize);
    }
    auto* b = reinterpret_cast<Block*>(aligned);
    b->free = nullptr;
    b->used = 0;
    b->carved = 0;
    link(b);
    ++blocks_;
    spare_ = true;
  }
  Block* b = open_;
  void* p;
  if (b->free != nullptr) {
    p = b->free;
    b->free = *static_cast<void**>(p);
  } else {
    p = reinterpret_cast<std::byte*>(b) + kHeaderSize + std::size_t{b->carved} * object_size_;
    ++b->carved;
  }
  if (b->used++ == 0) spare_ = false;
  if (b->used == per_block_) unlink(b);
  ++live_;
  return p;
}

void Slab::deallocate(void* p) noexcept {
  if (p == nullptr) return;
  --live_;
  if (!kCarve) {
    ::operator delete(p);
    return;
  }
  auto* b = reinterpret_cast<Block*>(reinterpret_cast<std::uintptr_t>(p) & ~(kBlockSize - 1));
  *static_cast<void**>(p) = b->free;
  b->free = p;
  if (b->used-- == per_block_) link(b);  // it was full: it has room again
  if (b->used > 0) return;
  if (!spare_) {
    spare_ = true;  // keep one empty block
    return;
  }
  unlink(b);
  ::munmap(b, kBlockSize);
  --blocks_;
}

}  // namespace reactor
