// Model configs in JSON: see model_config.h.
#include "recur/engine/model_config.h"

#include <cmath>
#include <cstdint>
#include <fstream>
#include <limits>
#include <map>
#include <set>
#include <sstream>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "recur/engine/attention.h"
#include "recur/engine/functional.h"
#include "recur/engine/layers.h"

namespace recur {

using json = nlohmann::json;

namespace {

// Reads keys from one JSON object, refusing unknown ones when done.
class Reader {
 public:
  Reader(const json& j, std::string where) : j_(j), where_(std::move(where)) {
    RECUR_CHECK(j.is_object(), Value, where_, ": expected a JSON object, got ", j.type_name());
  }
  bool has(const char* k) const { return j_.contains(k); }
  template <class T>
  T get(const char* k, T fallback) {
    seen_.insert(k);
    if (!j_.contains(k) || j_.at(k).is_null()) return fallback;
    if constexpr (std::is_integral_v<T> && !std::is_same_v<T, bool>) check_integer<T>(k);
    try {
      return j_.at(k).get<T>();
    } catch (const json::exception& e) {
      RECUR_THROW(Value, where_, ": key '", k, "' has the wrong type (", j_.at(k).dump(), "): ", e.what());
    }
  }
  template <class T>
  T need(const char* k) {
    RECUR_CHECK(j_.contains(k), Value, where_, ": missing key '", k, "'");
    return get<T>(k, T{});
  }
  const json& object(const char* k) {
    seen_.insert(k);
    RECUR_CHECK(j_.contains(k), Value, where_, ": missing key '", k, "'");
    return j_.at(k);
  }
  void done() const {
    for (auto it = j_.begin(); it != j_.end(); ++it)
      RECUR_CHECK(seen_.count(it.key()), Value, where_, ": unknown key '", it.key(), "'");
  }
  const std::string& where() const { return where_; }

 private:
  // An integer key's number must be an integer T holds: nlohmann's get<T>
  // casts a double (4e120, 2.5) or a wider integer without a check, which
  // for a double out of range is undefined (found by fuzz_model_config).
  // Integral doubles such as 3.0 stay accepted.
  template <class T>
  void check_integer(const char* k) const {
    const json& v = j_.at(k);
    if (!v.is_number()) return;  // get<T> reports the wrong type
    const long double lo = static_cast<long double>(std::numeric_limits<T>::min());
    const long double hi = static_cast<long double>(std::numeric_limits<T>::max());
    const long double x = v.is_number_unsigned()  ? static_cast<long double>(v.get<std::uint64_t>())
                          : v.is_number_integer() ? static_cast<long double>(v.get<std::int64_t>())
                                                  : static_cast<long double>(v.get<double>());
    RECUR_CHECK(std::isfinite(x) && x == std::floor(x) && x >= lo && x <= hi, Value, where_, ": key '", k,
                "' must be an integer from ", std::numeric_limits<T>::min(), " to ", std::numeric_limits<T>::max(),
                ", got ", v.dump());
  }

  const json& j_;
  std::string where_;
  std::set<std::string> seen_;
};

Conv1dPadding parse_conv_padding(const std::string& s, const std::string& where) {
  if (s == "valid") return Conv1dPadding::Valid;
  if (s == "same") return Conv1dPadding::Same;
  if (s == "causal") return Conv1dPadding::Causal;
  RECUR_THROW(Value, where, ": padding '", s, "' is not valid, same or causal");
}

ops::PoolPadding parse_pool_padding(const std::string& s, const std::string& where) {
  if (s == "valid") return ops::PoolPadding::Valid;
  if (s == "same") return ops::PoolPadding::Same;
  RECUR_THROW(Value, where, ": padding '", s, "' is not valid or same");
}

MergeMode parse_merge(const std::string& s, const std::string& where) {
  for (MergeMode m : {MergeMode::Concat, MergeMode::Sum, MergeMode::Mul, MergeMode::Ave})
    if (s == merge_mode_name(m)) return m;
  RECUR_THROW(Value, where, ": merge_mode '", s, "' is not concat, sum, mul or ave");
}

RecurrentOptions read_recurrent(Reader& r, CellType cell) {
  RecurrentOptions o;
  o.cell = cell;
  o.units = r.need<std::int64_t>("units");
  if (cell == CellType::SimpleRNN) {
    const std::string a = r.get<std::string>("activation", "tanh");
    RECUR_CHECK(a == "tanh" || a == "relu", Value, r.where(), ": SimpleRNN activation '", a,
                "' is not tanh or relu");
    o.activation = a == "relu" ? RnnActivation::Relu : RnnActivation::Tanh;
  }
  o.use_bias = r.get<bool>("use_bias", true);
  o.return_sequences = r.get<bool>("return_sequences", false);
  o.go_backwards = r.get<bool>("go_backwards", false);
  o.stateful = r.get<bool>("stateful", false);
  o.dropout = r.get<double>("dropout", 0.0);
  o.recurrent_dropout = r.get<double>("recurrent_dropout", 0.0);
  if (cell == CellType::LSTM) o.unit_forget_bias = r.get<bool>("unit_forget_bias", true);
  if (cell == CellType::GRU) o.reset_after = r.get<bool>("reset_after", true);
  return o;
}

json write_recurrent(const RecurrentOptions& o) {
  json j;
  j["type"] = cell_name(o.cell);
  j["units"] = o.units;
  if (o.cell == CellType::SimpleRNN) j["activation"] = o.activation == RnnActivation::Relu ? "relu" : "tanh";
  j["use_bias"] = o.use_bias;
  j["return_sequences"] = o.return_sequences;
  j["go_backwards"] = o.go_backwards;
  j["stateful"] = o.stateful;
  j["dropout"] = o.dropout;
  j["recurrent_dropout"] = o.recurrent_dropout;
  if (o.cell == CellType::LSTM) j["unit_forget_bias"] = o.unit_forget_bias;
  if (o.cell == CellType::GRU) j["reset_after"] = o.reset_after;
  return j;
}

std::optional<CellType> cell_of(const std::string& type) {
  if (type == "LSTM") return CellType::LSTM;
  if (type == "GRU") return CellType::GRU;
  if (type == "SimpleRNN") return CellType::SimpleRNN;
  return std::nullopt;
}

LayerPtr read_layer(const json& j, const std::string& where) {
  Reader r(j, where);
  const std::string type = r.need<std::string>("type");
  const std::string name = r.get<std::string>("name", "");
  LayerPtr layer;
  if (type == "Dense") {
    layer = std::make_shared<Dense>(r.need<std::int64_t>("units"),
                                    parse_activation(r.get<std::string>("activation", "linear")),
                                    r.get<bool>("use_bias", true), name);
  } else if (type == "Activation") {
    layer = std::make_shared<ActivationLayer>(parse_activation(r.need<std::string>("activation")), name);
  } else if (type == "Flatten") {
    layer = std::make_shared<Flatten>(name.empty() ? "flatten" : name);
  } else if (type == "Dropout") {
    layer = std::make_shared<Dropout>(r.need<double>("rate"), 0, name);
  } else if (type == "Embedding") {
    layer = std::make_shared<Embedding>(r.need<std::int64_t>("input_dim"), r.need<std::int64_t>("output_dim"),
                                        r.get<bool>("mask_zero", false), r.get<std::int64_t>("input_length", 0),
                                        name);
  } else if (type == "Conv1D") {
    Conv1DOptions o;
    o.filters = r.need<std::int64_t>("filters");
    o.kernel_size = r.need<std::int64_t>("kernel_size");
    o.strides = r.get<std::int64_t>("strides", 1);
    o.padding = parse_conv_padding(r.get<std::string>("padding", "valid"), where);
    o.dilation_rate = r.get<std::int64_t>("dilation_rate", 1);
    o.groups = r.get<std::int64_t>("groups", 1);
    o.activation = parse_activation(r.get<std::string>("activation", "linear"));
    o.use_bias = r.get<bool>("use_bias", true);
    layer = std::make_shared<Conv1D>(o, name);
  } else if (type == "MaxPooling1D" || type == "AveragePooling1D") {
    ops::Pool1dOptions o;
    o.kind = type == "MaxPooling1D" ? PoolKind::Max : PoolKind::Average;
    o.pool_size = r.get<std::int64_t>("pool_size", 2);
    o.strides = r.get<std::int64_t>("strides", 0);
    o.padding = parse_pool_padding(r.get<std::string>("padding", "valid"), where);
    layer = std::make_shared<Pooling1D>(o, name);
  } else if (type == "GlobalMaxPooling1D" || type == "GlobalAveragePooling1D") {
    layer = std::make_shared<GlobalPooling1D>(type == "GlobalMaxPooling1D" ? PoolKind::Max : PoolKind::Average,
                                              name);
  } else if (auto cell = cell_of(type)) {
    layer = std::make_shared<RNN>(read_recurrent(r, *cell), name);
  } else if (type == "Bidirectional") {
    const json& inner = r.object("layer");
    Reader ir(inner, where + ".layer");
    const std::string it = ir.need<std::string>("type");
    auto c = cell_of(it);
    RECUR_CHECK(c.has_value(), Value, where, ": Bidirectional wraps LSTM, GRU or SimpleRNN, not '", it, "'");
    const RecurrentOptions o = read_recurrent(ir, *c);
    ir.done();
    layer = std::make_shared<BidirectionalLayer>(o, parse_merge(r.get<std::string>("merge_mode", "concat"), where),
                                                 name);
  } else if (type == "Attention") {
    const std::string mode = r.get<std::string>("score_mode", "dot");
    RECUR_CHECK(mode == "dot" || mode == "concat", Value, where, ": Attention score_mode '", mode,
                "' is not dot or concat");
    layer = std::make_shared<Attention>(r.get<bool>("use_scale", false), parse_attention_score(mode), name);
  } else if (type == "AdditiveAttention") {
    layer = std::make_shared<AdditiveAttention>(r.get<bool>("use_scale", true), name);
  } else if (type == "AttentionPooling" || type == "HierarchicalAttention") {
    AttentionPoolingOptions o;
    o.score = parse_attention_score(r.get<std::string>("score_mode", "dot"));
    o.query = parse_attention_query(r.get<std::string>("query", "learned"));
    o.use_scale = r.get<bool>("use_scale", true);
    if (type == "AttentionPooling")
      layer = std::make_shared<AttentionPooling>(o, name);
    else
      layer = std::make_shared<HierarchicalAttention>(r.need<std::int64_t>("chunk_size"), o, name);
  } else {
    RECUR_THROW(Value, where, ": unknown layer type '", type,
                "' (Dense, Activation, Flatten, Dropout, Embedding, Conv1D, MaxPooling1D, AveragePooling1D, "
                "GlobalMaxPooling1D, GlobalAveragePooling1D, LSTM, GRU, SimpleRNN, Bidirectional, Attention, "
                "AdditiveAttention, AttentionPooling, HierarchicalAttention)");
  }
  r.done();
  return layer;
}

const char* padding_text(Conv1dPadding p) { return conv1d_padding_name(p); }

json write_layer(const Layer& l) {
  json j;
  j["type"] = l.type();
  j["name"] = l.name();
  if (auto* d = dynamic_cast<const Dense*>(&l)) {
    j["units"] = d->units();
    j["activation"] = activation_name(d->activation());
    j["use_bias"] = d->use_bias();
  } else if (auto* a = dynamic_cast<const ActivationLayer*>(&l)) {
    j["activation"] = activation_name(a->activation());
  } else if (auto* dr = dynamic_cast<const Dropout*>(&l)) {
    j["rate"] = dr->rate();
  } else if (auto* e = dynamic_cast<const Embedding*>(&l)) {
    j["input_dim"] = e->input_dim();
    j["output_dim"] = e->output_dim();
    j["mask_zero"] = e->mask_zero();
    if (e->input_length() > 0) j["input_length"] = e->input_length();
  } else if (auto* c = dynamic_cast<const Conv1D*>(&l)) {
    const Conv1DOptions& o = c->options();
    j["filters"] = o.filters;
    j["kernel_size"] = o.kernel_size;
    j["strides"] = o.strides;
    j["padding"] = padding_text(o.padding);
    j["dilation_rate"] = o.dilation_rate;
    j["groups"] = o.groups;
    j["activation"] = activation_name(o.activation);
    j["use_bias"] = o.use_bias;
  } else if (auto* p = dynamic_cast<const Pooling1D*>(&l)) {
    j["pool_size"] = p->options().pool_size;
    j["strides"] = p->options().strides ? p->options().strides : p->options().pool_size;
    j["padding"] = p->options().padding == ops::PoolPadding::Valid ? "valid" : "same";
  } else if (dynamic_cast<const GlobalPooling1D*>(&l) || dynamic_cast<const Flatten*>(&l)) {
    // no options
  } else if (auto* rn = dynamic_cast<const RNN*>(&l)) {
    json r = write_recurrent(rn->options());
    r["name"] = l.name();
    return r;
  } else if (auto* b = dynamic_cast<const BidirectionalLayer*>(&l)) {
    j["layer"] = write_recurrent(b->options());
    j["merge_mode"] = merge_mode_name(b->merge_mode());
  } else if (auto* at = dynamic_cast<const AttentionMerge*>(&l)) {
    j["use_scale"] = at->use_scale();
    if (dynamic_cast<const Attention*>(&l))
      j["score_mode"] = at->score_mode() == AttentionScore::Dot ? "dot" : "concat";
  } else if (auto* ap = dynamic_cast<const AttentionPooling*>(&l)) {
    j["score_mode"] = attention_score_name(ap->options().score);
    j["query"] = attention_query_name(ap->options().query);
    j["use_scale"] = ap->options().use_scale;
  } else if (auto* ha = dynamic_cast<const HierarchicalAttention*>(&l)) {
    j["chunk_size"] = ha->chunk_size();
    j["score_mode"] = attention_score_name(ha->options().score);
    j["query"] = attention_query_name(ha->options().query);
    j["use_scale"] = ha->options().use_scale;
  } else {
    RECUR_THROW(Value, "model config: cannot write layer type '", l.type(), "'");
  }
  return j;
}

DType parse_dtype(const std::string& s, const std::string& where) {
  if (s == "float32") return DType::f32;
  if (s == "float64") return DType::f64;
  RECUR_THROW(Value, where, ": dtype '", s, "' is not float32 or float64");
}

OptimizerConfig read_optimizer(const json& j, const std::string& where) {
  Reader r(j, where);
  const std::string name = r.need<std::string>("name");
  OptimizerConfig c;
  if (name == "sgd") {
    c = OptimizerConfig::sgd(r.get<double>("learning_rate", 0.01), r.get<double>("momentum", 0.0),
                             r.get<bool>("nesterov", false));
  } else if (name == "rmsprop") {
    c = OptimizerConfig::rmsprop(r.get<double>("learning_rate", 0.001), r.get<double>("rho", 0.9),
                                 r.get<double>("momentum", 0.0), r.get<double>("epsilon", 1e-7),
                                 r.get<bool>("centered", false));
  } else if (name == "adam" || name == "adamw") {
    c = OptimizerConfig::adam(r.get<double>("learning_rate", 0.001), r.get<double>("beta_1", 0.9),
                              r.get<double>("beta_2", 0.999), r.get<double>("epsilon", 1e-7));
    c.weight_decay = r.get<double>("weight_decay", name == "adamw" ? 0.004 : 0.0);
  } else {
    RECUR_THROW(Value, where, ": unknown optimizer '", name, "' (sgd, rmsprop, adam, adamw)");
  }
  c.global_clipnorm = r.get<double>("global_clipnorm", 0.0);
  c.clipvalue = r.get<double>("clipvalue", 0.0);
  r.done();
  return c;
}

json write_optimizer(const OptimizerConfig& c) {
  json j;
  switch (c.kind) {
    case OptimizerKind::SGD:
      j["name"] = "sgd";
      j["momentum"] = c.momentum;
      j["nesterov"] = c.nesterov;
      break;
    case OptimizerKind::RMSprop:
      j["name"] = "rmsprop";
      j["rho"] = c.rho;
      j["momentum"] = c.momentum;
      j["epsilon"] = c.epsilon;
      j["centered"] = c.centered;
      break;
    case OptimizerKind::Adam:
      j["name"] = c.weight_decay > 0 ? "adamw" : "adam";
      j["beta_1"] = c.beta_1;
      j["beta_2"] = c.beta_2;
      j["epsilon"] = c.epsilon;
      j["weight_decay"] = c.weight_decay;
      break;
  }
  j["learning_rate"] = c.learning_rate;
  if (c.global_clipnorm > 0) j["global_clipnorm"] = c.global_clipnorm;
  if (c.clipvalue > 0) j["clipvalue"] = c.clipvalue;
  return j;
}

std::string metric_text(LossKind k) {
  if (k == LossKind::MeanAbsoluteError) return "mae";
  if (k == LossKind::MeanSquaredError) return "mse";
  return loss_name(k);
}

CompileOptions read_compile(const json& j, const std::string& where) {
  Reader cr(j, where);
  CompileOptions co;
  if (cr.has("optimizer")) co.optimizer = read_optimizer(cr.object("optimizer"), where + ".optimizer");
  co.loss = parse_loss(cr.get<std::string>("loss", "mse"));
  for (const std::string& m : cr.get<std::vector<std::string>>("metrics", {})) co.metrics.push_back(parse_loss(m));
  co.huber_delta = cr.get<double>("huber_delta", 1.0);
  cr.done();
  return co;
}

json write_compile(const CompileOptions& c) {
  json cj;
  cj["optimizer"] = write_optimizer(c.optimizer);
  cj["loss"] = metric_text(c.loss);
  json m = json::array();
  for (LossKind k : c.metrics) m.push_back(metric_text(k));
  cj["metrics"] = m;
  if (c.loss == LossKind::Huber) cj["huber_delta"] = c.huber_delta;
  return cj;
}

Shape read_shape(const json& shape, const std::string& where) {
  RECUR_CHECK(shape.is_array(), Value, where, " must be an array like [null, 14]");
  Shape out;
  for (const json& d : shape) {
    RECUR_CHECK(d.is_null() || (d.is_number_integer() && d.get<std::int64_t>() > 0), Value, where,
                " entries are positive integers or null, got ", d.dump());
    out.push_back(d.is_null() ? kAnyDim : d.get<std::int64_t>());
  }
  return out;
}

json write_shape(const Shape& shape) {
  json j = json::array();
  for (std::int64_t d : shape) j.push_back(d == kAnyDim ? json(nullptr) : json(d));
  return j;
}

LayerPtr make_merge(const std::string& type, const std::string& name) {
  if (type == "Concatenate") return std::make_shared<Concatenate>(name);
  if (type == "Add") return std::make_shared<Add>(name);
  if (type == "Multiply") return std::make_shared<Multiply>(name);
  if (type == "Average") return std::make_shared<Average>(name);
  return nullptr;
}

ModelConfig functional_from_json(Reader& r, const std::string& source) {
  ModelConfig c;
  std::map<std::string, NodeRef> nodes;
  const json& inputs = r.object("inputs");
  RECUR_CHECK(inputs.is_array() && !inputs.empty(), Value, source, ": 'inputs' must be a non-empty array");
  std::vector<NodeRef> in_nodes;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const std::string where = source + ": inputs[" + std::to_string(i) + "]";
    Reader ir(inputs[i], where);
    const std::string name = ir.need<std::string>("name");
    RECUR_CHECK(!nodes.count(name), Value, where, ": the name '", name, "' is used twice");
    NodeRef n = Input(read_shape(ir.object("shape"), where + ".shape"), name);
    ir.done();
    nodes[name] = n;
    in_nodes.push_back(n);
  }
  const json& layers = r.object("layers");
  RECUR_CHECK(layers.is_array() && !layers.empty(), Value, source, ": 'layers' must be a non-empty array");
  for (std::size_t i = 0; i < layers.size(); ++i) {
    const std::string where = source + ": layers[" + std::to_string(i) + "]";
    RECUR_CHECK(layers[i].is_object(), Value, where, ": expected a JSON object, got ", layers[i].type_name());
    json j = layers[i];
    RECUR_CHECK(j.contains("name") && j.at("name").is_string(), Value, where,
                ": a functional layer needs a 'name' (what other layers' 'inbound' refer to)");
    const std::string name = j.at("name").get<std::string>();
    RECUR_CHECK(!nodes.count(name), Value, where, ": the name '", name, "' is used twice");
    RECUR_CHECK(j.contains("inbound") && j.at("inbound").is_array() && !j.at("inbound").empty(), Value, where,
                " ('", name, "'): needs 'inbound', the names of the nodes it is applied to");
    std::vector<NodeRef> inbound;
    for (const json& k : j.at("inbound")) {
      RECUR_CHECK(k.is_string(), Value, where, ": 'inbound' holds names, got ", k.dump());
      auto it = nodes.find(k.get<std::string>());
      RECUR_CHECK(it != nodes.end(), Value, where, " ('", name, "'): inbound '", k.get<std::string>(),
                  "' is not an input or an earlier layer");
      inbound.push_back(it->second);
    }
    j.erase("inbound");
    const std::string type = j.value("type", "");
    LayerPtr layer = make_merge(type, name);
    if (layer) {
      Reader mr(j, where);
      mr.need<std::string>("type");
      mr.need<std::string>("name");
      mr.done();
    } else {
      layer = read_layer(j, where);
    }
    nodes[name] = call(layer, inbound);
  }
  std::vector<NodeRef> out_nodes;
  for (const std::string& o : r.need<std::vector<std::string>>("outputs")) {
    auto it = nodes.find(o);
    RECUR_CHECK(it != nodes.end(), Value, source, ": output '", o, "' is not an input or a layer");
    out_nodes.push_back(it->second);
  }
  RECUR_CHECK(!out_nodes.empty(), Value, source, ": 'outputs' is empty");
  c.functional = std::make_unique<Model>(in_nodes, out_nodes, r.get<std::string>("name", "functional"));
  return c;
}

}  // namespace

ModelConfig model_config_from_json(const std::string& text, const std::string& source) {
  json j;
  try {
    j = json::parse(text, nullptr, true, /*ignore_comments=*/true);
  } catch (const json::exception& e) {  // parse_error, and out_of_range for a number too large for a double
    RECUR_THROW(Value, source, ": not valid JSON: ", e.what());
  }
  Reader r(j, source);
  const std::string format = r.get<std::string>("format", "recur.model/1");
  RECUR_CHECK(format == "recur.model/1", Value, source, ": format '", format,
              "' is not one this recur reads (recur.model/1)");
  const std::string cls = r.get<std::string>("class", "Sequential");
  RECUR_CHECK(cls == "Sequential" || cls == "Functional", Value, source, ": class '", cls,
              "' is neither Sequential nor Functional");
  ModelConfig c;
  if (cls == "Functional") {
    c = functional_from_json(r, source);
  } else {
    c.model = std::make_unique<Sequential>(r.get<std::string>("name", "sequential"));
    c.input_shape = read_shape(r.object("input_shape"), source + ": input_shape");
    const json& layers = r.object("layers");
    RECUR_CHECK(layers.is_array() && !layers.empty(), Value, source, ": 'layers' must be a non-empty array");
    for (std::size_t i = 0; i < layers.size(); ++i)
      c.model->add(read_layer(layers[i], source + ": layers[" + std::to_string(i) + "]"));
  }
  c.dtype = parse_dtype(r.get<std::string>("dtype", "float32"), source);
  if (r.has("compile")) c.compile = read_compile(r.object("compile"), source + ": compile");
  r.done();
  return c;
}

ModelConfig read_model_config(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  RECUR_CHECK(f.good(), IO, "cannot open model config '", path, "'");
  std::ostringstream s;
  s << f.rdbuf();
  return model_config_from_json(s.str(), path);
}

std::string model_config_to_json(const Sequential& model) {
  RECUR_CHECK(model.built(), Value, "model_config_to_json: build the model first (the config records its input)");
  json j;
  j["format"] = "recur.model/1";
  j["name"] = model.name();
  j["input_shape"] = write_shape(model.input_shape());
  j["dtype"] = dtype_name(model.dtype());
  json layers = json::array();
  for (const LayerPtr& l : model.layers()) layers.push_back(write_layer(*l));
  j["layers"] = layers;
  if (model.compiled()) j["compile"] = write_compile(model.compile_options());
  return j.dump(2) + "\n";
}

std::string model_config_to_json(const Model& model) {
  RECUR_CHECK(model.built(), Value, "model_config_to_json: build the model first (the config records its dtype)");
  json j;
  j["format"] = "recur.model/1";
  j["class"] = "Functional";
  j["name"] = model.name();
  j["dtype"] = dtype_name(model.dtype());
  json inputs = json::array();
  for (const NodeRef& n : model.inputs()) inputs.push_back({{"name", n->name()}, {"shape", write_shape(n->shape())}});
  j["inputs"] = inputs;
  // The node of each layer: walk back from the outputs.
  std::map<const Layer*, const Node*> node_of;
  std::vector<const Node*> todo;
  for (const NodeRef& n : model.outputs()) todo.push_back(n.get());
  while (!todo.empty()) {
    const Node* n = todo.back();
    todo.pop_back();
    if (n->is_input() || node_of.count(n->layer().get())) continue;
    node_of[n->layer().get()] = n;
    for (const NodeRef& in : n->inputs()) todo.push_back(in.get());
  }
  json layers = json::array();
  for (const LayerPtr& l : model.layers()) {  // topological order
    const Node* n = node_of.at(l.get());
    json lj;
    if (dynamic_cast<const MergeLayer*>(l.get()) && !dynamic_cast<const AttentionMerge*>(l.get())) {
      lj["type"] = l->type();
      lj["name"] = l->name();
    } else {
      lj = write_layer(*l);
    }
    json inbound = json::array();
    for (const NodeRef& in : n->inputs()) inbound.push_back(in->name());
    lj["inbound"] = inbound;
    layers.push_back(lj);
  }
  j["layers"] = layers;
  json outputs = json::array();
  for (const NodeRef& n : model.outputs()) outputs.push_back(n->name());
  j["outputs"] = outputs;
  if (model.compiled()) j["compile"] = write_compile(model.compile_options());
  return j.dump(2) + "\n";
}

}  // namespace recur
