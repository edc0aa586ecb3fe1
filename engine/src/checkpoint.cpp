// Model checkpoints in safetensors: see checkpoint.h.
#include "recur/engine/checkpoint.h"

#include <filesystem>
#include <set>

#include <nlohmann/json.hpp>

#include "recur/engine/functional.h"
#include "recur/engine/layers.h"
#include "recur/engine/model_config.h"
#include "recur/host/ops.h"
#include "recur/host/safetensors.h"

namespace recur {

namespace {

constexpr const char* kFormat = "recur.checkpoint/1";
constexpr const char* kOptimizerPrefix = "optimizer.";

// The (layer name + suffix) of every recurrent direction that trains one bias:
// its PyTorch b_hh is exported as zeros and folded on load.
std::vector<std::pair<std::string, Shape>> single_bias_directions(const TrainableModel& model) {
  std::vector<std::pair<std::string, Shape>> out;
  for (const LayerPtr& l : model.layers()) {
    const RecurrentOptions* o = nullptr;
    bool both = false;
    if (auto* r = dynamic_cast<const RNN*>(l.get())) o = &r->options();
    if (auto* b = dynamic_cast<const BidirectionalLayer*>(l.get())) o = &b->options(), both = true;
    if (o == nullptr || !o->use_bias || has_recurrent_bias(*o)) continue;
    const Shape s{cell_gates(o->cell) * o->units};
    out.emplace_back(l->name() + ".bias_hh_l0", s);
    if (both) out.emplace_back(l->name() + ".bias_hh_l0_reverse", s);
  }
  return out;
}

std::string ih_of(const std::string& hh_name) {
  const auto p = hh_name.find(".bias_hh_l0");
  return hh_name.substr(0, p) + ".bias_ih_l0" + hh_name.substr(p + std::string(".bias_hh_l0").size());
}

long long parse_int(const std::map<std::string, std::string>& meta, const char* key, const std::string& path) {
  auto it = meta.find(key);
  if (it == meta.end()) return 0;
  try {
    std::size_t used = 0;
    const long long v = std::stoll(it->second, &used);
    if (used == it->second.size() && v >= 0) return v;
  } catch (const std::exception&) {
  }
  RECUR_THROW(IO, path, ": metadata '", key, "' is not a whole number >= 0: '", it->second, "'");
}

CheckpointInfo info_from(const std::map<std::string, std::string>& meta, bool has_optimizer,
                         const std::string& path) {
  CheckpointInfo info;
  info.metadata = meta;
  info.has_optimizer = has_optimizer;
  info.position.epoch = int(parse_int(meta, "recur.epoch", path));
  info.position.step = parse_int(meta, "recur.step", path);
  if (auto it = meta.find("recur.fit_state"); it != meta.end()) info.fit_state = it->second;
  return info;
}

}  // namespace

void save_checkpoint(const TrainableModel& model, const std::string& path, bool with_optimizer,
                     CheckpointPosition position, const std::map<std::string, std::string>& metadata) {
  RECUR_CHECK(model.built(), Value, "save_checkpoint('", path, "'): the model is not built");
  const ParameterStore& p = model.parameters();
  std::vector<std::pair<std::string, Tensor>> tensors;
  for (std::size_t i = 0; i < p.size(); ++i) tensors.emplace_back(p.name(i), p.value(i));
  for (const auto& [name, shape] : single_bias_directions(model))
    tensors.emplace_back(name, Tensor::zeros(shape, p.dtype(), Device::cpu()));
  std::map<std::string, std::string> meta = metadata;
  meta["recur.format"] = kFormat;
  if (auto* seq = dynamic_cast<const Sequential*>(&model)) meta["recur.model"] = model_config_to_json(*seq);
  meta["recur.epoch"] = std::to_string(position.epoch);
  meta["recur.step"] = std::to_string(position.step);
  nlohmann::json rng = nlohmann::json::object();
  for (const LayerPtr& l : model.layers())
    if (!l->rng_state().empty()) rng[l->name()] = l->rng_state();
  meta["recur.rng"] = rng.dump();
  if (with_optimizer) {
    for (const NamedTensor& t : model.optimizer().state()) tensors.emplace_back(kOptimizerPrefix + t.first, t.second);
  }
  save_safetensors(path, tensors, meta);
}

CheckpointInfo read_checkpoint_info(const std::string& path) {
  const SafetensorsHeader h = read_safetensors_header(path);
  bool opt = false;
  for (const SafetensorsEntry& e : h.entries) opt = opt || e.name.rfind(kOptimizerPrefix, 0) == 0;
  return info_from(h.metadata, opt, path);
}

CheckpointInfo load_checkpoint(TrainableModel& model, const std::string& path, bool load_optimizer) {
  RECUR_CHECK(model.built(), Value, "load_checkpoint('", path, "'): build the model first");
  const SafetensorsFile file = load_safetensors(path, Device::cpu());
  ParameterStore& p = model.parameters();
  // 1. Check everything.
  std::set<std::string> used;
  for (std::size_t i = 0; i < p.size(); ++i) {
    const Tensor* t = file.find(p.name(i));
    RECUR_CHECK(t != nullptr, IO, path, ": no tensor '", p.name(i), "' (the model's parameter ",
                shape_str(p.shape(i)), ")");
    RECUR_CHECK(t->shape() == p.shape(i), Shape, path, ": '", p.name(i), "' has shape ", shape_str(t->shape()),
                ", the model's parameter ", shape_str(p.shape(i)));
    RECUR_CHECK(t->dtype() == p.dtype(), DType, path, ": '", p.name(i), "' is ", dtype_name(t->dtype()),
                ", the model computes in ", dtype_name(p.dtype()));
    used.insert(p.name(i));
  }
  std::vector<std::pair<std::string, std::string>> folds;  // (hh in file, ih parameter)
  for (const auto& [name, shape] : single_bias_directions(model)) {
    const Tensor* t = file.find(name);
    if (t == nullptr) continue;
    RECUR_CHECK(t->shape() == shape && t->dtype() == p.dtype(), Shape, path, ": '", name, "' must be ",
                dtype_name(p.dtype()), " ", shape_str(shape), ", got ", dtype_name(t->dtype()), " ",
                shape_str(t->shape()));
    folds.emplace_back(name, ih_of(name));
    used.insert(name);
  }
  std::vector<NamedTensor> opt_state;
  bool file_has_optimizer = false;
  for (const auto& [name, t] : file.tensors)
    if (name.rfind(kOptimizerPrefix, 0) == 0) {
      file_has_optimizer = true;
      opt_state.emplace_back(name.substr(std::string(kOptimizerPrefix).size()), t);
      used.insert(name);
    }
  for (const auto& [name, t] : file.tensors)
    RECUR_CHECK(used.count(name), IO, path, ": tensor '", name,
                "' matches no parameter of the model (is it the same architecture, with the same layer names?)");
  std::map<std::string, std::vector<std::uint64_t>> rng;
  if (load_optimizer) {
    RECUR_CHECK(file_has_optimizer, IO, path, ": no optimizer state in this file (saved as weights only)");
    RECUR_CHECK(model.compiled(), Value, "load_checkpoint('", path, "'): compile the model before loading optimizer state");
    const auto mine = model.optimizer().state();
    RECUR_CHECK(opt_state.size() == mine.size(), IO, path, ": optimizer state has ", opt_state.size(),
                " tensors, this model's optimizer ", mine.size(), " (another optimizer kind?)");
    for (std::size_t i = 0; i < mine.size(); ++i) {
      RECUR_CHECK(opt_state[i].first == mine[i].first, IO, path, ": optimizer tensor ", i, " is '",
                  opt_state[i].first, "', expected '", mine[i].first, "'");
      RECUR_CHECK(opt_state[i].second.numel() == mine[i].second.numel() &&
                      opt_state[i].second.dtype() == mine[i].second.dtype(), IO, path, ": optimizer '",
                  mine[i].first, "' must be ", dtype_name(mine[i].second.dtype()), " with ",
                  mine[i].second.numel(), " elements");
    }
    auto it = file.metadata.find("recur.rng");
    if (it != file.metadata.end()) {
      nlohmann::json j;
      try {
        j = nlohmann::json::parse(it->second);
        for (auto e = j.begin(); e != j.end(); ++e) rng[e.key()] = e.value().get<std::vector<std::uint64_t>>();
      } catch (const nlohmann::json::exception& e) {
        RECUR_THROW(IO, path, ": metadata 'recur.rng' is malformed: ", e.what());
      }
      for (const auto& [name, state] : rng) {
        model.layer(name);  // throws naming an unknown layer
        RECUR_CHECK(state.size() == model.layer(name).rng_state().size(), IO, path, ": 'recur.rng' of layer '",
                    name, "' has ", state.size(), " values, expected ", model.layer(name).rng_state().size());
      }
    }
  }
  const CheckpointInfo info = info_from(file.metadata, file_has_optimizer, path);
  // 2. Copy.
  for (std::size_t i = 0; i < p.size(); ++i) p.value(i).copy_from(*file.find(p.name(i)));
  for (const auto& [hh, ih] : folds) {
    const Tensor b = p.value(ih);
    ops::binary(BinaryOp::Add, b, file.find(hh)->to(b.device()), b);
  }
  if (load_optimizer) {
    model.optimizer().load_state(opt_state);
    for (const auto& [name, state] : rng) model.layer(name).set_rng_state(state);
  }
  return info;
}

ModelCheckpoint::ModelCheckpoint(std::string path, std::string monitor, bool save_best_only,
                                 std::string interrupt_path)
    : path_(std::move(path)),
      interrupt_path_(std::move(interrupt_path)),
      inner_(
          [this](TrainableModel& m, int, const Logs&) {
            save_checkpoint(m, path_, m.compiled(), {current_epoch, next_step}, state_metadata());
            remove_stale_interrupted({current_epoch, next_step});
          },
          std::move(monitor), save_best_only) {}

std::map<std::string, std::string> ModelCheckpoint::state_metadata() const {
  std::map<std::string, std::string> meta;
  if (!fit_state.empty()) meta["recur.fit_state"] = fit_state;
  return meta;
}

void ModelCheckpoint::remove_stale_interrupted(CheckpointPosition now) const {
  if (interrupt_path_.empty()) return;
  std::error_code ec;
  if (!std::filesystem::exists(interrupt_path_, ec)) return;
  try {
    const CheckpointPosition p = read_checkpoint_info(interrupt_path_).position;
    if (p.epoch > now.epoch || (p.epoch == now.epoch && p.step > now.step)) return;  // a later state: keep it
  } catch (const Error&) {  // unreadable: nothing to resume from anyway
  }
  std::filesystem::remove(interrupt_path_, ec);
}

void ModelCheckpoint::on_epoch_end(int epoch, const Logs& logs, TrainableModel& model) {
  inner_.current_epoch = current_epoch;
  inner_.next_step = next_step;
  inner_.on_epoch_end(epoch, logs, model);
}

void ModelCheckpoint::on_epoch_committed(int epoch, TrainableModel& model) {
  inner_.current_epoch = current_epoch;
  inner_.next_step = next_step;
  inner_.fit_state = fit_state;
  inner_.on_epoch_committed(epoch, model);
}

void ModelCheckpoint::on_train_end(TrainableModel& model, bool interrupted) {
  if (interrupt_path_.empty()) return;
  if (interrupted) {
    save_checkpoint(model, interrupt_path_, model.compiled(), {current_epoch, next_step}, state_metadata());
  } else {
    std::error_code ec;  // the run is complete: nothing left to resume
    std::filesystem::remove(interrupt_path_, ec);
  }
}

}  // namespace recur
