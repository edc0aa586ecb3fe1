// DataParallel: gradient buckets summed across ranks during backward (data_parallel.h).
#include "recur/engine/data_parallel.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdlib>

#include "recur/common/error.h"

namespace recur {

std::pair<std::int64_t, std::int64_t> shard_rows(std::int64_t rows, int part, int parts) {
  RECUR_CHECK(parts >= 1 && part >= 0 && part < parts && rows >= 0, Value, "shard_rows: part ", part, " of ",
              parts, " of ", rows, " rows");
  const std::int64_t base = rows / parts, extra = rows % parts;
  const std::int64_t begin = part * base + std::min<std::int64_t>(part, extra);
  return {begin, begin + base + (part < extra ? 1 : 0)};
}

namespace {
std::size_t bucket_bytes_from_env() {
  const char* v = std::getenv("RECUR_DIST_BUCKET_MB");
  if (v == nullptr || *v == '\0') return std::size_t(4) << 20;
  char* end = nullptr;
  const double mb = std::strtod(v, &end);
  RECUR_CHECK(end != v && *end == '\0' && std::isfinite(mb) && mb > 0, Value, "RECUR_DIST_BUCKET_MB='", v,
              "': give the all-reduce bucket size as a positive number of MiB");
  return std::max<std::size_t>(1, std::size_t(mb * double(1 << 20)));
}
}  // namespace

DataParallel::DataParallel(TrainableModel& model, std::shared_ptr<Communicator> comm, std::size_t bucket_bytes)
    : model_(model), comm_(std::move(comm)) {
  RECUR_CHECK(comm_ != nullptr, Value, "DataParallel: no communicator");
  RECUR_CHECK(model.built(), Value, "DataParallel: build the model first");
  RECUR_CHECK(model.gradient_hook() == nullptr, Value, "DataParallel: the model already has a gradient hook");
  if (bucket_bytes == 0) bucket_bytes = bucket_bytes_from_env();
  const ParameterStore& store = model.parameters();
  const std::size_t n = store.size();
  // Parameters in buffer order, cut into buckets of about bucket_bytes; a
  // bucket runs from its first parameter's offset to the next bucket's (the
  // zero padding between parameters travels with it).
  std::vector<std::size_t> order(n);
  for (std::size_t i = 0; i < n; ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](std::size_t a, std::size_t b) { return store.offset(a) < store.offset(b); });
  const std::size_t elem = dtype_size(store.dtype());
  param_bucket_.assign(n, 0);
  std::vector<std::int64_t> starts;
  std::int64_t bucket_begin = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const std::size_t i = order[k];
    if (starts.empty()) starts.push_back(0);
    if (std::size_t(store.offset(i) - bucket_begin) * elem >= bucket_bytes) {
      bucket_begin = store.offset(i);
      starts.push_back(bucket_begin);
    }
    param_bucket_[i] = starts.size() - 1;
  }
  for (std::size_t b = 0; b < starts.size(); ++b)
    buckets_.push_back({starts[b], b + 1 < starts.size() ? starts[b + 1] : store.buffer_numel()});
  bucket_params_.assign(buckets_.size(), 0);
  for (std::size_t i = 0; i < n; ++i) ++bucket_params_[param_bucket_[i]];
  for (const LayerPtr& l : model.layers())
    for (const Layer::Param& p : l->params()) layer_params_[l.get()].push_back(p.index);
  model.set_gradient_hook(this);
}

DataParallel::~DataParallel() {
  if (model_.gradient_hook() == this) model_.set_gradient_hook(nullptr);
}

void DataParallel::broadcast_parameters() { comm_->broadcast(model_.parameters().values(), 0); }

void DataParallel::set_step_rows(std::int64_t local, std::int64_t global) {
  RECUR_CHECK(global > 0 && local >= 0 && local <= global, Value, "DataParallel: ", local, " of ", global,
              " rows");
  scale_ = double(local) / double(global);
}

void DataParallel::start(std::size_t b) {
  const auto [begin, end] = buckets_[b];
  if (end > begin) pending_.push_back(comm_->all_reduce_sum_start(model_.parameters().grads().slice(begin, end)));
}

void DataParallel::on_backward_begin() {
  active_ = true;
  remaining_ = bucket_params_;
  ready_.assign(param_bucket_.size(), false);
  next_ = std::int64_t(buckets_.size()) - 1;
  pending_.clear();
}

void DataParallel::on_layer_backward(const Layer& layer) {
  if (!active_) return;
  auto it = layer_params_.find(&layer);
  if (it != layer_params_.end()) {
    for (std::size_t p : it->second) {
      if (ready_[p]) continue;
      ready_[p] = true;
      --remaining_[param_bucket_[p]];
    }
  }
  // Start every complete bucket in order; then let the started ones advance.
  while (next_ >= 0 && remaining_[std::size_t(next_)] == 0) {
    start(std::size_t(next_--));
    ++overlapped_;
  }
  for (auto& p : pending_) p->progress();
}

void DataParallel::on_backward_end() {
  RECUR_CHECK(active_, Internal, "DataParallel: on_backward_end without on_backward_begin");
  const auto t0 = std::chrono::steady_clock::now();
  active_ = false;
  while (next_ >= 0) start(std::size_t(next_--));
  for (auto& p : pending_) p->wait();
  pending_.clear();
  ++steps_;
  end_seconds_ += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace recur
