// Slab: objects of one size carved from 64 KiB blocks, for records kept by the thousand (one per
// connection): no malloc header and no rounding up to malloc's 16-byte size classes, so an object
// costs its size. A freed object goes on its block's free list; a block whose objects are all
// freed goes back to the system, except one kept so that a connection opened and closed in a loop
// does not map and unmap. Not thread-safe: one thread at a time (its owner guards it otherwise).
// Built with ASan or TSan, each object is its own ::operator new, so the sanitizers see every use
// after free.
#pragma once

#include <cstddef>
#include <cstdint>

namespace reactor {

class Slab {
 public:
  static constexpr std::size_t kBlockSize = 64 * 1024;
  // False under ASan or TSan: objects are then each their own ::operator new. An owner that keeps
  // objects of its own beside the slab's does the same.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  static constexpr bool kCarves = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
  static constexpr bool kCarves = false;
#else
  static constexpr bool kCarves = true;
#endif
#else
  static constexpr bool kCarves = true;
#endif

  // Objects of `object_size` bytes (at most 4 KiB), 8-aligned.
  explicit Slab(std::size_t object_size) noexcept;
  // Returns the blocks. Every object must have been freed already.
  ~Slab();
  Slab(const Slab&) = delete;
  Slab& operator=(const Slab&) = delete;

  // Null when the system has no memory left.
  void* allocate() noexcept;
  // `p` came from this slab's allocate().
  void deallocate(void* p) noexcept;

  std::size_t live() const noexcept {
    return live_;
  }
  std::size_t blocks() const noexcept {
    return blocks_;
  }
  std::size_t object_size() const noexcept {
    return object_size_;
  }

 private:
  struct Block;
  void link(Block* b) noexcept;
  void unlink(Block* b) noexcept;

  std::uint32_t object_size_;
  std::uint32_t per_block_;
  Block* open_ = nullptr;  // blocks with room (a full block is in no list)
  std::size_t live_ = 0;
  std::size_t blocks_ = 0;
  bool spare_ = false;  // one block is empty and kept
};

}  // namespace reactor
