// The caching allocator (see allocator.h for the policy).
#include "recur/host/allocator.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "recur/common/error.h"

namespace recur {
namespace {
constexpr std::size_t kSmallGranule = 512;
constexpr std::size_t kLargeThreshold = std::size_t(1) << 20;
constexpr std::size_t kLargeGranule = std::size_t(2) << 20;

bool caching_wanted() {
#if defined(RECUR_SANITIZE)
  return false;
#else
  const char* env = std::getenv("RECUR_ALLOCATOR_CACHE");
  return !(env && std::strcmp(env, "0") == 0);
#endif
}
}  // namespace

std::string format_bytes(std::size_t bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = double(bytes);
  int u = 0;
  while (v >= 1024.0 && u < 4) {
    v /= 1024.0;
    ++u;
  }
  char buf[32];
  if (u == 0)
    std::snprintf(buf, sizeof buf, "%zu B", bytes);
  else
    std::snprintf(buf, sizeof buf, "%.2f %s", v, units[u]);
  return buf;
}

std::size_t CachingAllocator::round_size(std::size_t bytes) {
  if (bytes == 0) return kSmallGranule;
  const std::size_t g = bytes < kLargeThreshold ? kSmallGranule : kLargeGranule;
  return (bytes + g - 1) / g * g;
}

CachingAllocator::CachingAllocator(std::string device_name, std::unique_ptr<RawAllocator> raw)
    : device_name_(std::move(device_name)), raw_(std::move(raw)), caching_(caching_wanted()) {}

CachingAllocator::~CachingAllocator() { empty_cache(); }

void* CachingAllocator::allocate(std::size_t bytes, std::size_t& block_bytes) {
  // Far beyond any device; also keeps the rounding below from wrapping.
  RECUR_CHECK(bytes <= (SIZE_MAX >> 2), OutOfMemory, device_name_, ": could not allocate ",
              format_bytes(bytes));
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.requests;
  const std::size_t want = caching_ ? round_size(bytes) : (bytes ? bytes : 1);
  if (caching_) {
    // Best fit, but never more than twice the request, so big cached blocks
    // are not pinned under small tensors.
    auto it = free_blocks_.lower_bound(want);
    if (it != free_blocks_.end() && it->first <= 2 * want) {
      void* p = it->second;
      block_bytes = it->first;
      free_blocks_.erase(it);
      stats_.cached -= block_bytes;
      stats_.in_use += block_bytes;
      stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
      ++stats_.cache_hits;
      return p;
    }
  }
  auto over_limit = [&] { return stats_.limit && stats_.in_use + stats_.cached + want > stats_.limit; };
  if (over_limit()) empty_cache_locked();
  void* p = over_limit() ? nullptr : raw_->allocate(want);
  if (!p && stats_.limit == 0 && stats_.cached > 0) {
    empty_cache_locked();
    p = raw_->allocate(want);
  }
  if (!p) {
    std::string note = raw_->free_memory_note();
    std::string limit = stats_.limit ? ", limit " + format_bytes(stats_.limit) : std::string();
    RECUR_THROW(OutOfMemory, device_name_, ": could not allocate ", format_bytes(bytes), " (",
                format_bytes(stats_.in_use), " already held by recur tensors", limit,
                note.empty() ? "" : "; ", note, ")");
  }
  block_bytes = want;
  stats_.in_use += want;
  stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
  return p;
}

void CachingAllocator::release(void* p, std::size_t block_bytes) noexcept {
  if (!p) return;
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.in_use -= block_bytes;
  if (caching_) {
    free_blocks_.emplace(block_bytes, p);
    stats_.cached += block_bytes;
  } else {
    raw_->deallocate(p, block_bytes);
  }
}

void CachingAllocator::empty_cache() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  empty_cache_locked();
}

void CachingAllocator::empty_cache_locked() noexcept {
  for (auto& [size, p] : free_blocks_) raw_->deallocate(p, size);
  free_blocks_.clear();
  stats_.cached = 0;
}

AllocatorStats CachingAllocator::stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return stats_;
}

void CachingAllocator::reset_peak() {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.peak_in_use = stats_.in_use;
}

void CachingAllocator::set_limit(std::size_t bytes) {
  std::lock_guard<std::mutex> lock(mutex_);
  stats_.limit = bytes;
}

}  // namespace recur
