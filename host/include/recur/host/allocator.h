// A caching allocator per device. Freed blocks go back to a size-keyed cache
// and are handed out again without touching cudaMalloc/malloc; blocks are
// rounded (512 B granularity below 1 MiB, 2 MiB above) so that sizes recur.
//
// Streams: each device backend runs all its work on one stream, so a block
// released to the cache and reused by a later op is ordered after every use of
// its previous tenant. Anything that adds streams must add event tracking here.
//
// In sanitizer builds (RECUR_SANITIZE) or with RECUR_ALLOCATOR_CACHE=0 the cache
// is off and every block has its exact size, so AddressSanitizer sees overflows.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

namespace recur {

// What actually allocates device or host memory.
class RawAllocator {
 public:
  virtual ~RawAllocator() = default;
  // nullptr on failure; never throws.
  virtual void* allocate(std::size_t bytes) noexcept = 0;
  virtual void deallocate(void* p, std::size_t bytes) noexcept = 0;
  // A note for out-of-memory messages, e.g. "the device reports 1.2 GiB free".
  virtual std::string free_memory_note() const { return {}; }
};

struct AllocatorStats {
  std::size_t in_use = 0;       // bytes in blocks held by tensors
  std::size_t cached = 0;       // bytes in free blocks kept for reuse
  std::size_t peak_in_use = 0;  // high-water mark of in_use
  std::size_t limit = 0;        // 0: none
  std::uint64_t requests = 0;   // allocate() calls
  std::uint64_t cache_hits = 0;  // requests served from the cache
};

class CachingAllocator {
 public:
  CachingAllocator(std::string device_name, std::unique_ptr<RawAllocator> raw);
  ~CachingAllocator();
  CachingAllocator(const CachingAllocator&) = delete;
  CachingAllocator& operator=(const CachingAllocator&) = delete;

  // Returns a block of at least `bytes` (block_bytes receives its size).
  // Throws OutOfMemoryError, naming the device and sizes, when neither the
  // cache nor the raw allocator (after the cache is emptied) can serve it.
  void* allocate(std::size_t bytes, std::size_t& block_bytes);
  void release(void* p, std::size_t block_bytes) noexcept;
  // Returns every cached block to the raw allocator.
  void empty_cache() noexcept;

  AllocatorStats stats() const;
  void reset_peak();
  // Caps in_use + cached at `bytes` (0 removes the cap), e.g. to share a GPU.
  void set_limit(std::size_t bytes);
  bool caching() const { return caching_; }

  static std::size_t round_size(std::size_t bytes);

 private:
  void empty_cache_locked() noexcept;

  std::string device_name_;
  std::unique_ptr<RawAllocator> raw_;
  bool caching_;
  mutable std::mutex mutex_;
  std::multimap<std::size_t, void*> free_blocks_;
  AllocatorStats stats_;
};

// "1.50 GiB", "512 B".
std::string format_bytes(std::size_t bytes);

}  // namespace recur
