// LatencyHistogram: log-linear buckets (HdrHistogram's layout) over nanosecond values. Each
// power of two is split into 64 equal sub-buckets, so a reported percentile is within 1/128
// (~0.8%) of the true value; values below 64 ns are exact. Fixed memory, no allocation per
// record, mergeable across threads.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

namespace load {

class LatencyHistogram {
 public:
  static constexpr unsigned kSubBucketBits = 6;
  static constexpr std::uint64_t kSubBuckets = std::uint64_t{1} << kSubBucketBits;
  static constexpr std::size_t kBucketCount = (64 - kSubBucketBits + 1) * kSubBuckets;

  LatencyHistogram() : counts_(kBucketCount, 0) {}

  void record(std::uint64_t value_ns) noexcept {
    ++counts_[index_of(value_ns)];
    ++count_;
    sum_ += static_cast<double>(value_ns);
    min_ = std::min(min_, value_ns);
    max_ = std::max(max_, value_ns);
  }

  void merge(const LatencyHistogram& other) noexcept {
    for (std::size_t i = 0; i < kBucketCount; ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    sum_ += other.sum_;
    min_ = std::min(min_, other.min_);
    max_ = std::max(max_, other.max_);
  }

  std::uint64_t count() const noexcept { return count_; }
  std::uint64_t min() const noexcept { return count_ ? min_ : 0; }
  std::uint64_t max() const noexcept { return max_; }
  double mean() const noexcept { return count_ ? sum_ / static_cast<double>(count_) : 0.0; }

  // The value at or below which `percent` of the recorded values fall (nearest rank), reported
  // as its bucket's midpoint clamped to [min, max]. 0 when empty.
  std::uint64_t percentile(double percent) const noexcept {
    if (count_ == 0) return 0;
    percent = std::clamp(percent, 0.0, 100.0);
    auto rank =
        static_cast<std::uint64_t>(std::ceil(percent / 100.0 * static_cast<double>(count_)));
    rank = std::clamp<std::uint64_t>(rank, 1, count_);
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < kBucketCount; ++i) {
      seen += counts_[i];
      if (seen >= rank) return std::clamp(midpoint_of(i), min(), max_);
    }
    return max_;
  }

  // Bucket arithmetic, public for the tests.
  static std::size_t index_of(std::uint64_t v) noexcept {
    if (v < kSubBuckets) return static_cast<std::size_t>(v);
    unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(v));
    unsigned shift = msb - kSubBucketBits;
    return static_cast<std::size_t>((shift + 1) * kSubBuckets + ((v >> shift) - kSubBuckets));
  }
  static std::uint64_t lowest_of(std::size_t index) noexcept {
    if (index < kSubBuckets) return index;
    std::uint64_t shift = index / kSubBuckets - 1;
    return (kSubBuckets + index % kSubBuckets) << shift;
  }
  static std::uint64_t width_of(std::size_t index) noexcept {
    return index < kSubBuckets ? 1 : std::uint64_t{1} << (index / kSubBuckets - 1);
  }
  static std::uint64_t midpoint_of(std::size_t index) noexcept {
    return lowest_of(index) + width_of(index) / 2;
  }

 private:
  std::vector<std::uint64_t> counts_;
  std::uint64_t count_ = 0;
  double sum_ = 0;
  std::uint64_t min_ = std::numeric_limits<std::uint64_t>::max();
  std::uint64_t max_ = 0;
};

}  // namespace load
