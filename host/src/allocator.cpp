// The caching allocator (see allocator.h for the policy).
#include "recur/host/allocator.h"

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>

#include "recur/common/error.h"

#if defined(__SANITIZE_ADDRESS__)
#define RECUR_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RECUR_ASAN 1
#endif
#endif
#if defined(RECUR_ASAN)
#include <sanitizer/asan_interface.h>
#endif

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

bool arenas_wanted() {
  const char* env = std::getenv("RECUR_STEP_ARENA");
  return !(env && std::strcmp(env, "0") == 0);
}

// Offsets inside an arena: cuBLAS and vector loads want 256-byte alignment.
constexpr std::size_t kArenaAlignment = 256;
constexpr std::size_t kNoOffset = std::numeric_limits<std::size_t>::max();
// A key whose plan went stale this many times is no longer planned.
constexpr int kMaxStale = 3;
// Recorded regions with more blocks than this are not planned (planning is
// quadratic in the worst case).
constexpr std::size_t kMaxPlannedRequests = 1u << 16;
}  // namespace

ArenaPlan plan_arena(const std::vector<ArenaRequest>& requests, std::size_t alignment) {
  RECUR_CHECK(alignment > 0 && (alignment & (alignment - 1)) == 0, Value,
              "plan_arena: alignment must be a power of two, got ", alignment);
  const std::size_t n = requests.size();
  auto aligned = [&](std::size_t b) { return (b + alignment - 1) / alignment * alignment; };
  ArenaPlan plan;
  plan.offsets.assign(n, 0);
  // The lower bound: the most bytes alive at one tick (sweep over the ends).
  {
    std::vector<std::pair<std::uint64_t, long long>> events;
    events.reserve(2 * n);
    for (const ArenaRequest& r : requests) {
      RECUR_CHECK(r.end > r.begin, Value, "plan_arena: a request ends (", r.end,
                  ") before it begins (", r.begin, ")");
      events.emplace_back(r.begin, static_cast<long long>(aligned(r.bytes)));
      events.emplace_back(r.end, -static_cast<long long>(aligned(r.bytes)));
    }
    // At equal ticks, ends first: [begin, end) intervals.
    std::sort(events.begin(), events.end());
    long long live = 0, peak = 0;
    for (const auto& e : events) {
      live += e.second;
      peak = std::max(peak, live);
    }
    plan.live_peak = static_cast<std::size_t>(peak);
  }
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) {
    return requests[a].bytes > requests[b].bytes;
  });
  std::vector<std::size_t> placed;
  placed.reserve(n);
  std::vector<std::pair<std::size_t, std::size_t>> busy;  // [offset, end) of time-overlapping ones
  for (std::size_t i : order) {
    const ArenaRequest& r = requests[i];
    busy.clear();
    for (std::size_t j : placed) {
      const ArenaRequest& q = requests[j];
      if (q.begin < r.end && r.begin < q.end)
        busy.emplace_back(plan.offsets[j], plan.offsets[j] + aligned(q.bytes));
    }
    std::sort(busy.begin(), busy.end());
    const std::size_t size = aligned(r.bytes);
    std::size_t offset = 0;
    for (const auto& [lo, hi] : busy) {
      if (offset + size <= lo) break;  // fits in the gap below this one
      offset = std::max(offset, hi);
    }
    plan.offsets[i] = offset;
    plan.bytes = std::max(plan.bytes, offset + size);
    placed.push_back(i);
  }
  return plan;
}

struct CachingAllocator::Plan {
  std::uint64_t owner = 0, key = 0;
  std::uint64_t last_use = 0;
  std::vector<std::size_t> bytes;    // per request, as recorded (rounded)
  std::vector<std::size_t> offsets;  // per request; kNoOffset: from the cache
  char* arena = nullptr;
  std::size_t arena_bytes = 0, live_peak = 0, planned = 0;
  std::size_t live = 0;  // arena blocks alive
  bool ready = false;    // has an arena to replay
  bool stale = false;
  bool orphan = false;   // dropped by its owner; freed when its last block is
  int stale_count = 0;
  bool disabled = false;
  std::uint64_t replays = 0;  // regions served from its arena to the end
};

std::uint64_t CachingAllocator::new_region_owner() {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1);
}

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
    : device_name_(std::move(device_name)), raw_(std::move(raw)), caching_(caching_wanted()),
      arenas_(arenas_wanted()) {}

CachingAllocator::~CachingAllocator() {
  std::lock_guard<std::mutex> lock(mutex_);
  for (auto& plan : plans_) {
    if (plan->arena) raw_->deallocate(plan->arena, plan->arena_bytes);
  }
  plans_.clear();
  empty_cache_locked();
}

void* CachingAllocator::allocate(std::size_t bytes, std::size_t& block_bytes) {
  // Far beyond any device; also keeps the rounding below from wrapping.
  RECUR_CHECK(bytes <= (SIZE_MAX >> 2), OutOfMemory, device_name_, ": could not allocate ",
              format_bytes(bytes));
  std::lock_guard<std::mutex> lock(mutex_);
  ++stats_.requests;
  const std::size_t want = caching_ ? round_size(bytes) : (bytes ? bytes : 1);
  if (region_ && !recording_) {
    if (void* p = arena_allocate_locked(bytes, want)) {
      block_bytes = want;
      return p;
    }
  }
  void* p = cache_allocate_locked(bytes, want, block_bytes);
  if (region_ && recording_) {
    recorded_live_[p] = recorded_.size();
    recorded_.push_back({want, clock_++, 0});  // the size asked for, not the cached block's
  }
  return p;
}

void* CachingAllocator::cache_allocate_locked(std::size_t bytes, std::size_t want,
                                              std::size_t& block_bytes) {
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
  auto over_limit = [&] { return stats_.limit && held_locked() + want > stats_.limit; };
  if (over_limit()) {
    empty_cache_locked();
    drop_idle_arenas_locked();
  }
  void* p = over_limit() ? nullptr : raw_->allocate(want);
  if (!p && stats_.limit == 0 && (stats_.cached > 0 || arena_idle_bytes_locked() > 0)) {
    empty_cache_locked();
    drop_idle_arenas_locked();
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
  ++clock_;
  if (!recorded_live_.empty()) {
    auto it = recorded_live_.find(p);
    if (it != recorded_live_.end()) {
      recorded_[it->second].end = clock_;
      recorded_live_.erase(it);
    }
  }
  if (arena_release_locked(p)) return;
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

// Device bytes held: blocks outside arenas, the cache, and the arenas.
std::size_t CachingAllocator::held_locked() const noexcept {
  return stats_.in_use - arena_live_bytes_ + stats_.cached + arena_stats_.reserved;
}

// --- Step arenas -----------------------------------------------------------

void CachingAllocator::poison(void* p, std::size_t bytes, bool poisoned) const noexcept {
#if defined(RECUR_ASAN)
  if (raw_->host_memory()) {
    if (poisoned)
      ASAN_POISON_MEMORY_REGION(p, bytes);
    else
      ASAN_UNPOISON_MEMORY_REGION(p, bytes);
  }
#else
  (void)p, (void)bytes, (void)poisoned;
#endif
}

void CachingAllocator::set_arenas_enabled(bool on) {
  std::lock_guard<std::mutex> lock(mutex_);
  RECUR_CHECK(depth_ == 0, Value, device_name_, ": arenas cannot be switched inside a region");
  arenas_ = on;
}

void CachingAllocator::begin_region(std::uint64_t owner, std::uint64_t key) {
  std::lock_guard<std::mutex> lock(mutex_);
  if (depth_++ > 0 || !arenas_) return;
  ++uses_;
  Plan* plan = nullptr;
  std::size_t owned = 0;
  for (auto& q : plans_) {
    if (q->owner != owner || q->orphan) continue;
    ++owned;
    if (q->key == key) plan = q.get();
  }
  if (!plan) {
    // An owner whose shapes keep changing (variable-length batches: one key
    // per padded length) would record, empty the cache and allocate an arena
    // at nearly every step, each plan dropped before its key comes back.
    // After kPlansPerOwner plans in a row dropped without one replay, its new
    // keys run unplanned, from the cache; its kept plans still replay.
    if (churning_owners_.count(owner)) return;
    if (owned >= kPlansPerOwner) {  // drop the owner's least recently used idle plan
      Plan* lru = nullptr;
      for (auto& q : plans_)
        if (q->owner == owner && !q->orphan && q->live == 0 && (!lru || q->last_use < lru->last_use))
          lru = q.get();
      if (!lru) return;  // all busy: run this region unplanned
      int& unused = unused_drops_[owner];
      unused = lru->replays == 0 ? unused + 1 : 0;
      if (unused >= int(kPlansPerOwner)) {
        churning_owners_.insert(owner);
        unused_drops_.erase(owner);
        return;  // the least recently used plan stays: it may still replay
      }
      free_arena_locked(*lru);
      plans_.erase(std::find_if(plans_.begin(), plans_.end(),
                                [&](const std::unique_ptr<Plan>& q) { return q.get() == lru; }));
    }
    plans_.push_back(std::make_unique<Plan>());
    plan = plans_.back().get();
    plan->owner = owner;
    plan->key = key;
  }
  plan->last_use = uses_;
  if (plan->disabled) return;
  if (plan->stale) {
    if (plan->live > 0) return;  // blocks of the old plan still alive: pass through
    free_arena_locked(*plan);
    plan->ready = false;
    plan->stale = false;
  }
  region_ = plan;
  recording_ = !plan->ready;
  clock_ = 0;
  next_ = 0;
  if (recording_) {
    recorded_.clear();
    recorded_live_.clear();
  }
}

void CachingAllocator::end_region() noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  if (depth_ == 0 || --depth_ > 0) return;
  Plan* plan = region_;
  region_ = nullptr;
  if (!plan) return;
  if (recording_) {
    region_ = plan;
    finish_recording_locked();
    region_ = nullptr;
    return;
  }
  if (next_ != plan->bytes.size()) {
    mark_stale_locked(*plan);
    return;
  }
  ++arena_stats_.regions_replayed;
  ++plan->replays;
  arena_stats_.last_arena = plan->arena_bytes;
  arena_stats_.last_live_peak = plan->live_peak;
  arena_stats_.last_requests = plan->planned;
}

void CachingAllocator::finish_recording_locked() noexcept {
  Plan& plan = *region_;
  recording_ = false;
  ++arena_stats_.regions_recorded;
  // Blocks still alive escaped the region: they stay with the cache.
  std::vector<ArenaRequest> inside;
  std::vector<std::size_t> index;
  for (std::size_t i = 0; i < recorded_.size(); ++i) {
    if (recorded_[i].end == 0) continue;
    inside.push_back(recorded_[i]);
    index.push_back(i);
  }
  recorded_live_.clear();
  if (inside.empty() || inside.size() > kMaxPlannedRequests) {
    plan.disabled = true;
    recorded_.clear();
    return;
  }
  ArenaPlan placed;
  try {
    placed = plan_arena(inside, kArenaAlignment);
  } catch (...) {
    plan.disabled = true;
    recorded_.clear();
    return;
  }
  auto over_limit = [&] { return stats_.limit && held_locked() + placed.bytes > stats_.limit; };
  // The blocks this region used now sit in the cache; the arena replaces them.
  empty_cache_locked();
  char* arena = over_limit() ? nullptr : static_cast<char*>(raw_->allocate(placed.bytes));
  if (!arena) {  // no room for an arena: keep using the cache
    plan.disabled = true;
    recorded_.clear();
    return;
  }
  plan.bytes.resize(recorded_.size());
  plan.offsets.assign(recorded_.size(), kNoOffset);
  for (std::size_t i = 0; i < recorded_.size(); ++i) plan.bytes[i] = recorded_[i].bytes;
  for (std::size_t k = 0; k < index.size(); ++k) plan.offsets[index[k]] = placed.offsets[k];
  plan.arena = arena;
  plan.arena_bytes = placed.bytes;
  plan.live_peak = placed.live_peak;
  plan.planned = inside.size();
  plan.ready = true;
  arena_stats_.reserved += placed.bytes;
  poison(arena, placed.bytes, true);
  recorded_.clear();
}

void* CachingAllocator::arena_allocate_locked(std::size_t bytes, std::size_t want) {
  Plan& plan = *region_;
  ++clock_;
  const std::size_t i = next_++;
  if (i >= plan.bytes.size() || plan.bytes[i] != want) {
    mark_stale_locked(plan);
    return nullptr;
  }
  if (plan.offsets[i] == kNoOffset) return nullptr;
  char* p = plan.arena + plan.offsets[i];
  // The slot must be free: an earlier tenant that lives longer than when it
  // was recorded means this region has diverged from its plan.
  auto it = arena_live_.lower_bound(p);
  const bool clash = (it != arena_live_.end() && it->first < p + want) ||
                     (it != arena_live_.begin() && std::prev(it)->first + std::prev(it)->second.second > p);
  if (clash) {
    mark_stale_locked(plan);
    return nullptr;
  }
  arena_live_.emplace(p, std::make_pair(&plan, want));
  ++plan.live;
  arena_live_bytes_ += want;
  stats_.in_use += want;
  stats_.peak_in_use = std::max(stats_.peak_in_use, stats_.in_use);
  poison(p, bytes ? bytes : 1, false);
  return p;
}

bool CachingAllocator::arena_release_locked(void* p) noexcept {
  if (arena_live_.empty()) return false;
  auto it = arena_live_.find(static_cast<char*>(p));
  if (it == arena_live_.end()) return false;
  Plan* plan = it->second.first;
  const std::size_t bytes = it->second.second;
  arena_live_.erase(it);
  arena_live_bytes_ -= bytes;
  stats_.in_use -= bytes;
  poison(p, bytes, true);
  if (--plan->live == 0 && plan->orphan) {
    free_arena_locked(*plan);
    plans_.erase(std::find_if(plans_.begin(), plans_.end(),
                              [&](const std::unique_ptr<Plan>& q) { return q.get() == plan; }));
  }
  return true;
}

void CachingAllocator::mark_stale_locked(Plan& plan) noexcept {
  ++arena_stats_.stale;
  plan.stale = true;
  if (++plan.stale_count >= kMaxStale) plan.disabled = true;
  region_ = nullptr;  // the rest of this region passes through to the cache
}

void CachingAllocator::free_arena_locked(Plan& plan) noexcept {
  if (!plan.arena) return;
  poison(plan.arena, plan.arena_bytes, false);
  raw_->deallocate(plan.arena, plan.arena_bytes);
  arena_stats_.reserved -= plan.arena_bytes;
  plan.arena = nullptr;
  plan.arena_bytes = 0;
  plan.ready = false;
}

std::size_t CachingAllocator::arena_idle_bytes_locked() const noexcept {
  std::size_t idle = 0;
  for (const auto& q : plans_)
    if (q->live == 0 && q.get() != region_) idle += q->arena_bytes;
  return idle;
}

bool CachingAllocator::drop_idle_arenas_locked() noexcept {
  bool any = false;
  for (auto& q : plans_) {
    if (q->live == 0 && q.get() != region_ && q->arena) {
      free_arena_locked(*q);
      q->stale = false;  // re-recorded when next used
      any = true;
    }
  }
  return any;
}

void CachingAllocator::drop_arenas(std::uint64_t owner) noexcept {
  std::lock_guard<std::mutex> lock(mutex_);
  churning_owners_.erase(owner);
  unused_drops_.erase(owner);
  for (auto it = plans_.begin(); it != plans_.end();) {
    Plan& q = **it;
    if (q.owner != owner || q.orphan) {
      ++it;
      continue;
    }
    if (&q == region_) region_ = nullptr;
    if (q.live > 0) {
      q.orphan = true;
      ++it;
      continue;
    }
    free_arena_locked(q);
    it = plans_.erase(it);
  }
}

ArenaStats CachingAllocator::arena_stats() const {
  std::lock_guard<std::mutex> lock(mutex_);
  return arena_stats_;
}

}  // namespace recur
