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
//
// Step arenas. A training step allocates the same sequence of blocks every
// time its shapes repeat. Between begin_region(key) and end_region() the
// allocator records that sequence once (served from the cache as usual), with
// each block's lifetime; plan_arena() then places the blocks in one arena by
// liveness (blocks whose lifetimes do not overlap share bytes), and the next
// regions with the same key are served from that arena by sequence number,
// with no cache search and no device malloc, at stable addresses (what CUDA
// graph capture needs). A block that outlived its
// recording region (a loss value the caller reads, optimizer state created on
// the first step) is left to the cache. Replay checks every request: a
// different size, an extra request, or a slot whose earlier tenant is still
// alive sends that request to the cache and marks the plan stale, so a
// diverging step is never given memory in use; a stale plan is re-recorded,
// and a key that goes stale three times is no longer planned. An owner whose
// keys keep changing (kPlansPerOwner plans in a row dropped before any
// replayed, as with variable-length batches) gets no new plans: each would
// empty the cache and allocate an arena it never uses. In
// AddressSanitizer builds the free parts of a host arena are poisoned.
// RECUR_STEP_ARENA=0 turns arenas off.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

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
  // Whether the memory is host memory (AddressSanitizer may poison it).
  virtual bool host_memory() const { return false; }
};

// One block of a recorded region: its rounded size and its lifetime in the
// region's event clock (every allocate and release is one tick), end exclusive.
struct ArenaRequest {
  std::size_t bytes = 0;
  std::uint64_t begin = 0, end = 0;
};

struct ArenaPlan {
  std::vector<std::size_t> offsets;  // per request
  std::size_t bytes = 0;             // the arena's size
  std::size_t live_peak = 0;         // most bytes alive at one tick: no plan can be smaller
};

// Places each request at an offset (a multiple of `alignment`) so that two
// requests alive at the same tick never share a byte. Greedy by size: the
// largest first, each at the lowest offset that fits among the placed ones it
// overlaps in time.
ArenaPlan plan_arena(const std::vector<ArenaRequest>& requests, std::size_t alignment);

struct ArenaStats {
  std::size_t reserved = 0;           // bytes held by every arena
  std::size_t last_arena = 0;         // the arena of the last region that replayed (0: none)
  std::size_t last_live_peak = 0;     // its lower bound (see ArenaPlan)
  std::size_t last_requests = 0;      // blocks it serves per region
  std::uint64_t regions_recorded = 0;
  std::uint64_t regions_replayed = 0;  // regions served from an arena to the end
  std::uint64_t stale = 0;             // plans a diverging region made stale
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

  // Step arenas (see the top of this file). `owner` names who runs the
  // region (a model; see new_region_owner), `key` the step's shapes (e.g. a
  // hash of the batch shapes and train/test). A region opened inside another
  // is part of the outer one. An owner keeps at most kPlansPerOwner plans
  // (least recently used ones are dropped).
  static constexpr std::size_t kPlansPerOwner = 8;
  static std::uint64_t new_region_owner();
  void begin_region(std::uint64_t owner, std::uint64_t key);
  void end_region() noexcept;
  ArenaStats arena_stats() const;
  bool arenas_enabled() const { return arenas_; }
  void set_arenas_enabled(bool on);
  // Forgets the owner's plans and frees their arenas (those a live block
  // still uses are freed when it is released).
  void drop_arenas(std::uint64_t owner) noexcept;

 private:
  struct Plan;
  void empty_cache_locked() noexcept;
  void* allocate_locked(std::size_t bytes, std::size_t want, std::size_t& block_bytes);
  void* cache_allocate_locked(std::size_t bytes, std::size_t want, std::size_t& block_bytes);
  void* arena_allocate_locked(std::size_t bytes, std::size_t want);
  bool arena_release_locked(void* p) noexcept;
  void finish_recording_locked() noexcept;
  void mark_stale_locked(Plan& plan) noexcept;
  void free_arena_locked(Plan& plan) noexcept;
  bool drop_idle_arenas_locked() noexcept;
  std::size_t arena_idle_bytes_locked() const noexcept;
  std::size_t held_locked() const noexcept;
  void poison(void* p, std::size_t bytes, bool poisoned) const noexcept;

  std::string device_name_;
  std::unique_ptr<RawAllocator> raw_;
  bool caching_;
  mutable std::mutex mutex_;
  std::multimap<std::size_t, void*> free_blocks_;
  AllocatorStats stats_;

  // Step arenas.
  bool arenas_;
  std::vector<std::unique_ptr<Plan>> plans_;
  std::uint64_t uses_ = 0;      // regions opened, for least-recently-used
  int depth_ = 0;               // open regions (nested ones are part of the outer)
  Plan* region_ = nullptr;      // the open region's plan; null: pass-through
  bool recording_ = false;      // the open region records (else it replays)
  std::uint64_t clock_ = 0;     // event ticks of the open region
  std::size_t next_ = 0;        // requests so far in the open region
  // Recording: live blocks by address -> request index.
  std::unordered_map<void*, std::size_t> recorded_live_;
  std::vector<ArenaRequest> recorded_;
  // Arena blocks alive now (any plan): address -> (plan, bytes).
  std::map<char*, std::pair<Plan*, std::size_t>> arena_live_;
  std::size_t arena_live_bytes_ = 0;
  // Owners whose plans were dropped unused kPlansPerOwner times in a row
  // (begin_region): their new keys are not planned. Counts of such drops.
  std::set<std::uint64_t> churning_owners_;
  std::map<std::uint64_t, int> unused_drops_;
  ArenaStats arena_stats_;
};

// "1.50 GiB", "512 B".
std::string format_bytes(std::size_t bytes);

}  // namespace recur
