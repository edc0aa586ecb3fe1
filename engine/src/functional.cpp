// The functional graph: merge layers, symbolic nodes and Model (functional.h).
#include "recur/engine/functional.h"

#include <algorithm>
#include <atomic>
#include <iomanip>
#include <map>
#include <queue>
#include <set>
#include <sstream>
#include <unordered_map>
#include <unordered_set>

#include "model_detail.h"
#include "recur/host/ops.h"

namespace recur {

namespace {

// Whether a shape with kAnyDim axes admits `actual` (which has the batch axis first).
bool fits(const Shape& declared, const Shape& actual) {
  if (actual.size() != declared.size() + 1) return false;
  for (std::size_t i = 0; i < declared.size(); ++i)
    if (declared[i] != kAnyDim && declared[i] != actual[i + 1]) return false;
  return true;
}

// Two declared dimensions that must agree: the known one, or kAnyDim; false
// when both are known and differ.
bool unify(std::int64_t a, std::int64_t b, std::int64_t& out) {
  if (a == kAnyDim) {
    out = b;
    return true;
  }
  out = a;
  return b == kAnyDim || a == b;
}

Tensor scaled(const Tensor& t, double factor) {
  return ops::mul(t, Tensor::full(t.shape(), factor, t.dtype(), t.device()));
}

}  // namespace

// ---- MergeLayer -----------------------------------------------------------------------
std::string MergeLayer::shapes_str(const std::vector<Shape>& shapes) {
  std::string s;
  for (std::size_t i = 0; i < shapes.size(); ++i)
    s += (i == 0 ? "" : i + 1 == shapes.size() ? " and " : ", ") + keras_shape_str(shapes[i]);
  return s;
}

std::string MergeLayer::shapes_str(const std::vector<Tensor>& xs) {
  std::string s;
  for (std::size_t i = 0; i < xs.size(); ++i)
    s += (i == 0 ? "" : i + 1 == xs.size() ? " and " : ", ") + shape_str(xs[i].shape());
  return s;
}

void MergeLayer::build(const std::vector<Shape>& input_shapes, DType dtype) {
  RECUR_CHECK(input_shapes.size() >= 2, Value, type(), " '", name(),
              "' is a merge layer: it takes a list of at least 2 inputs, got ", input_shapes.size());
  pending_ = input_shapes;
  try {
    Layer::build(input_shapes.front(), dtype);  // calls do_build, which reads pending_
  } catch (...) {
    pending_.clear();
    throw;
  }
  input_shapes_ = std::move(pending_);
  pending_.clear();
}

const std::vector<Shape>& MergeLayer::input_shapes() const {
  RECUR_CHECK(built(), Value, type(), " '", name(), "' is not built yet");
  return input_shapes_;
}

Shape MergeLayer::do_build(const Shape& /*first_input*/) {
  if (pending_.empty())
    shape_error("a merge layer takes a list of inputs (use it in a functional Model, or build it "
                "with MergeLayer::build(input_shapes))");
  for (const Shape& s : pending_)
    for (std::int64_t d : s)
      if (d != kAnyDim && d < 1)
        shape_error("input shape " + keras_shape_str(s) + " has a dimension below 1");
  return merge_build(pending_);
}

Tensor MergeLayer::do_forward(const Tensor&, const Tensor&, bool) {
  RECUR_THROW(Value, type(), " '", name(),
              "' is a merge layer: call its forward() with the list of its inputs");
}

Tensor MergeLayer::do_backward(const Tensor&) {
  RECUR_THROW(Value, type(), " '", name(),
              "' is a merge layer: its backward() returns one gradient per input (MergeLayer::backward)");
}

Tensor MergeLayer::forward(const std::vector<Tensor>& xs, const std::vector<Tensor>& masks,
                           bool training) {
  RECUR_CHECK(built(), Value, type(), " '", name(), "': forward() before build()");
  const std::size_t n = input_shapes_.size();
  RECUR_CHECK(xs.size() == n, Value, type(), " '", name(), "' takes ", n, " inputs, got ", xs.size());
  RECUR_CHECK(masks.empty() || masks.size() == n, Value, type(), " '", name(), "': ", masks.size(),
              " masks for ", n, " inputs (give none or one per input)");
  for (std::size_t i = 0; i < n; ++i) {
    const Tensor& x = xs[i];
    RECUR_CHECK(x.defined(), Value, type(), " '", name(), "': input ", i, " is an undefined tensor");
    RECUR_CHECK(x.dtype() == dtype(), DType, type(), " '", name(), "': input ", i, " is ",
                dtype_name(x.dtype()), ", expected ", dtype_name(dtype()));
    RECUR_CHECK(x.device() == xs[0].device(), Device, type(), " '", name(), "': input ", i, " is on ",
                x.device().str(), ", input 0 on ", xs[0].device().str());
    if (!fits(input_shapes_[i], x.shape()))
      shape_error("input " + std::to_string(i) + " of shape " + shape_str(x.shape()) +
                  " does not match the expected " + keras_shape_str(input_shapes_[i]));
    if (!masks.empty() && masks[i].defined()) {
      const Tensor& m = masks[i];
      RECUR_CHECK(x.ndim() >= 2 && m.shape() == (Shape{x.dim(0), x.dim(1)}), Shape, type(), " '",
                  name(), "': mask ", i, " of shape ", shape_str(m.shape()), " does not match input ",
                  shape_str(x.shape()), " (expected [batch, time])");
      RECUR_CHECK(m.dtype() == dtype() && m.device() == x.device(), DType, type(), " '", name(),
                  "': mask ", i, " must be ", dtype_name(dtype()), " on ", x.device().str());
    }
  }
  check_runtime_shapes(xs);
  trained_forward_ = false;
  Tensor y = merge_forward_masked(xs, masks, training);
  trained_forward_ = training;
  return y;
}

Tensor MergeLayer::merged_mask(const std::vector<Tensor>& masks) const {
  Tensor out;
  for (const Tensor& m : masks) {
    if (!m.defined()) continue;
    out = out.defined() ? ops::mul(out, m) : m;
  }
  return out;
}

std::vector<Tensor> MergeLayer::backward(const Tensor& dy) {
  RECUR_CHECK(trained_forward_, Value, type(), " '", name(),
              "': backward() needs a forward() with training = true first");
  RECUR_CHECK(dy.defined() && dy.dtype() == dtype(), DType, type(), " '", name(),
              "': the output gradient must be a ", dtype_name(dtype()), " tensor");
  if (!fits(output_shape(), dy.shape()))
    shape_error("output gradient of shape " + shape_str(dy.shape()) + " does not match the output " +
                keras_shape_str(output_shape()));
  return merge_backward(dy);
}

// ---- Concatenate ----------------------------------------------------------------------
Shape Concatenate::merge_build(const std::vector<Shape>& in) {
  Shape out = in[0];
  if (out.empty())
    shape_error("inputs of shapes " + shapes_str(in) + " have no axis to concatenate along");
  for (std::size_t i = 1; i < in.size(); ++i) {
    bool ok = in[i].size() == out.size();
    for (std::size_t a = 0; ok && a + 1 < out.size(); ++a) ok = unify(out[a], in[i][a], out[a]);
    if (!ok)
      shape_error("cannot concatenate inputs of shapes " + shapes_str(in) +
                  ": every axis but the last must match");
    out.back() = out.back() == kAnyDim || in[i].back() == kAnyDim ? kAnyDim : out.back() + in[i].back();
  }
  return out;
}

void Concatenate::check_runtime_shapes(const std::vector<Tensor>& xs) const {
  const Shape& s0 = xs[0].shape();
  for (const Tensor& x : xs) {
    const Shape& s = x.shape();
    bool ok = s.size() == s0.size();
    for (std::size_t a = 0; ok && a + 1 < s.size(); ++a) ok = s[a] == s0[a];
    if (!ok)
      shape_error("cannot concatenate inputs of shapes " + shapes_str(xs) +
                  ": every axis but the last must match");
  }
}

Tensor Concatenate::merge_forward(const std::vector<Tensor>& xs, bool /*training*/) {
  Shape s = xs[0].shape();
  widths_.clear();
  std::int64_t total = 0;
  for (const Tensor& x : xs) {
    widths_.push_back(x.dim(-1));
    total += x.dim(-1);
  }
  s.back() = total;
  Tensor y = Tensor::empty(s, dtype(), xs[0].device());
  std::int64_t offset = 0;
  for (const Tensor& x : xs) {
    ops::copy_columns(x, y, offset);
    offset += x.dim(-1);
  }
  return y;
}

std::vector<Tensor> Concatenate::merge_backward(const Tensor& dy) {
  std::int64_t total = 0;
  for (std::int64_t w : widths_) total += w;
  if (dy.dim(-1) != total)
    shape_error("output gradient of shape " + shape_str(dy.shape()) + " has " +
                std::to_string(dy.dim(-1)) + " columns, the forward concatenated " +
                std::to_string(total));
  std::vector<Tensor> dxs;
  std::int64_t offset = 0;
  for (std::int64_t w : widths_) {
    dxs.push_back(ops::extract_columns(dy, offset, w));
    offset += w;
  }
  return dxs;
}

// ---- Add, Multiply, Average -----------------------------------------------------------
Shape ElementwiseMerge::merge_build(const std::vector<Shape>& in) {
  Shape out = in[0];
  for (std::size_t i = 1; i < in.size(); ++i) {
    bool ok = in[i].size() == out.size();
    for (std::size_t a = 0; ok && a < out.size(); ++a) ok = unify(out[a], in[i][a], out[a]);
    if (!ok)
      shape_error(std::string("inputs of shapes ") + shapes_str(in) + " differ (" + type() +
                  " needs inputs of one shape; it does not broadcast)");
  }
  return out;
}

void ElementwiseMerge::check_runtime_shapes(const std::vector<Tensor>& xs) const {
  for (const Tensor& x : xs)
    if (x.shape() != xs[0].shape())
      shape_error(std::string("inputs of shapes ") + shapes_str(xs) + " differ (" + type() +
                  " needs inputs of one shape; it does not broadcast)");
}

Tensor Add::merge_forward(const std::vector<Tensor>& xs, bool /*training*/) {
  n_ = xs.size();
  Tensor y = ops::add(xs[0], xs[1]);
  for (std::size_t i = 2; i < xs.size(); ++i) ops::binary(BinaryOp::Add, y, xs[i], y);
  return y;
}

std::vector<Tensor> Add::merge_backward(const Tensor& dy) { return std::vector<Tensor>(n_, dy); }

Tensor Multiply::merge_forward(const std::vector<Tensor>& xs, bool training) {
  Tensor y = ops::mul(xs[0], xs[1]);
  for (std::size_t i = 2; i < xs.size(); ++i) ops::binary(BinaryOp::Mul, y, xs[i], y);
  xs_ = training ? xs : std::vector<Tensor>{};
  return y;
}

// d/dx_i of x_0 x_1 ... x_{n-1}: dy times the product of the others.
std::vector<Tensor> Multiply::merge_backward(const Tensor& dy) {
  std::vector<Tensor> dxs;
  for (std::size_t i = 0; i < xs_.size(); ++i) {
    Tensor d;
    for (std::size_t j = 0; j < xs_.size(); ++j) {
      if (j == i) continue;
      if (!d.defined())
        d = ops::mul(dy, xs_[j]);
      else
        ops::binary(BinaryOp::Mul, d, xs_[j], d);
    }
    dxs.push_back(d);
  }
  return dxs;
}

Tensor Average::merge_forward(const std::vector<Tensor>& xs, bool /*training*/) {
  n_ = xs.size();
  Tensor y = ops::add(xs[0], xs[1]);
  for (std::size_t i = 2; i < xs.size(); ++i) ops::binary(BinaryOp::Add, y, xs[i], y);
  return scaled(y, 1.0 / double(n_));
}

std::vector<Tensor> Average::merge_backward(const Tensor& dy) {
  return std::vector<Tensor>(n_, scaled(dy, 1.0 / double(n_)));
}

// ---- nodes ----------------------------------------------------------------------------
struct NodeFactory {
  static NodeRef make() {
    static std::atomic<std::uint64_t> serial{0};
    NodeRef n(new Node());
    n->serial_ = ++serial;
    return n;
  }
  static NodeRef input(const Shape& shape, std::string name) {
    NodeRef n = make();
    n->input_name_ = std::move(name);
    n->input_shape_ = shape;
    return n;
  }
  static NodeRef applied(const LayerPtr& layer, const std::vector<NodeRef>& inputs) {
    NodeRef n = make();
    n->layer_ = layer;
    n->inputs_ = inputs;
    return n;
  }
};

const std::string& Node::name() const { return layer_ ? layer_->name() : input_name_; }

const Shape& Node::shape() const { return layer_ ? layer_->output_shape() : input_shape_; }

NodeRef Input(const Shape& shape, std::string name) {
  RECUR_CHECK(!name.empty(), Value, "Input: the name cannot be empty");
  for (std::int64_t d : shape)
    RECUR_CHECK(d == kAnyDim || d >= 1, Shape, "Input '", name, "': shape ", keras_shape_str(shape),
                " has a dimension below 1");
  return NodeFactory::input(shape, std::move(name));
}

NodeRef call(const LayerPtr& layer, const std::vector<NodeRef>& inputs) {
  RECUR_CHECK(layer != nullptr, Value, "call(): the layer is null");
  for (std::size_t i = 0; i < inputs.size(); ++i)
    RECUR_CHECK(inputs[i] != nullptr, Value, "call(): input ", i, " of ", layer->type(), " '",
                layer->name(), "' is a null node");
  const bool merge = dynamic_cast<const MergeLayer*>(layer.get()) != nullptr;
  if (merge)
    RECUR_CHECK(inputs.size() >= 2, Value, layer->type(), " '", layer->name(),
                "' is a merge layer: it takes a list of at least 2 inputs, got ", inputs.size());
  else
    RECUR_CHECK(inputs.size() == 1, Value, layer->type(), " '", layer->name(),
                "' takes one input, got ", inputs.size(), " (merge them first, e.g. with Concatenate)");
  RECUR_CHECK(!layer->built(), Value, layer->type(), " '", layer->name(),
              "' is already built (it belongs to another model)");
  return NodeFactory::applied(layer, inputs);
}

NodeRef call(const LayerPtr& layer, const NodeRef& input) {
  return call(layer, std::vector<NodeRef>{input});
}

NodeRef concatenate(const std::vector<NodeRef>& inputs, std::string name) {
  return call(std::make_shared<Concatenate>(std::move(name)), inputs);
}
NodeRef add(const std::vector<NodeRef>& inputs, std::string name) {
  return call(std::make_shared<Add>(std::move(name)), inputs);
}
NodeRef multiply(const std::vector<NodeRef>& inputs, std::string name) {
  return call(std::make_shared<Multiply>(std::move(name)), inputs);
}
NodeRef average(const std::vector<NodeRef>& inputs, std::string name) {
  return call(std::make_shared<Average>(std::move(name)), inputs);
}

// ---- Model: the graph -----------------------------------------------------------------
std::string Model::who() const { return "Model '" + name_ + "'"; }

namespace {
std::string node_label(const Node& n) {
  return n.is_input() ? "Input '" + n.name() + "'"
                      : std::string(n.layer()->type()) + " '" + n.name() + "'";
}
}  // namespace

Model::Model(std::vector<NodeRef> inputs, std::vector<NodeRef> outputs, std::string name)
    : name_(std::move(name)), inputs_(std::move(inputs)), outputs_(std::move(outputs)) {
  RECUR_CHECK(!name_.empty(), Value, "Model: the name cannot be empty");
  RECUR_CHECK(!inputs_.empty(), Value, who(), ": needs at least one input");
  RECUR_CHECK(!outputs_.empty(), Value, who(), ": needs at least one output");
  std::unordered_set<const Node*> listed;
  for (std::size_t i = 0; i < inputs_.size(); ++i) {
    RECUR_CHECK(inputs_[i] != nullptr, Value, who(), ": inputs[", i, "] is a null node");
    RECUR_CHECK(inputs_[i]->is_input(), Value, who(), ": inputs[", i, "] is ", node_label(*inputs_[i]),
                ", not an Input (a model's inputs are Input() nodes)");
    RECUR_CHECK(listed.insert(inputs_[i].get()).second, Value, who(), ": ", node_label(*inputs_[i]),
                " is listed twice among the inputs");
  }
  for (std::size_t i = 0; i < outputs_.size(); ++i)
    RECUR_CHECK(outputs_[i] != nullptr, Value, who(), ": outputs[", i, "] is a null node");

  // Every node the outputs depend on.
  std::vector<NodeRef> reached;
  std::unordered_set<const Node*> seen;
  std::vector<NodeRef> stack(outputs_.rbegin(), outputs_.rend());
  while (!stack.empty()) {
    NodeRef n = stack.back();
    stack.pop_back();
    if (!seen.insert(n.get()).second) continue;
    reached.push_back(n);
    for (const NodeRef& in : n->inputs()) stack.push_back(in);
  }
  for (const NodeRef& n : reached)
    RECUR_CHECK(!n->is_input() || listed.count(n.get()), Value, who(), ": the outputs depend on ",
                node_label(*n), ", which is not among the model's inputs (a dangling input: list it)");
  for (const NodeRef& in : inputs_)
    RECUR_CHECK(seen.count(in.get()), Value, who(), ": ", node_label(*in),
                " is not connected to any output (unused inputs are not allowed)");
  std::unordered_map<const Layer*, const Node*> owner;
  for (const NodeRef& n : reached) {
    if (n->is_input()) continue;
    const Layer& l = *n->layer();
    RECUR_CHECK(owner.emplace(&l, n.get()).second, Value, who(), ": ", l.type(), " '", l.name(),
                "' is applied twice; shared layers are not supported (Keras would share its "
                "weights): apply a second layer instead");
    RECUR_CHECK(!l.built(), Value, who(), ": ", l.type(), " '", l.name(),
                "' is already built (it belongs to another model)");
  }

  // Kahn's algorithm; among the ready nodes, the one made first.
  std::unordered_map<const Node*, std::size_t> pending;  // inputs not yet scheduled
  std::unordered_map<const Node*, std::vector<NodeRef>> consumers;
  for (const NodeRef& n : reached) {
    pending[n.get()] = n->inputs().size();
    for (const NodeRef& in : n->inputs()) consumers[in.get()].push_back(n);
  }
  auto later = [](const NodeRef& a, const NodeRef& b) { return a->serial() > b->serial(); };
  std::priority_queue<NodeRef, std::vector<NodeRef>, decltype(later)> ready(later);
  for (const NodeRef& n : reached)
    if (pending[n.get()] == 0) ready.push(n);
  std::unordered_map<const Node*, std::size_t> index;
  while (!ready.empty()) {
    NodeRef n = ready.top();
    ready.pop();
    index[n.get()] = steps_.size();
    Step s;
    s.node = n;
    s.merge = n->is_input() ? nullptr : dynamic_cast<MergeLayer*>(n->layer().get());
    steps_.push_back(std::move(s));
    for (const NodeRef& c : consumers[n.get()])
      if (--pending[c.get()] == 0) ready.push(c);
  }
  if (steps_.size() != reached.size()) {  // nodes only refer to earlier ones: cannot happen
    for (const NodeRef& n : reached)
      if (!index.count(n.get()))
        RECUR_THROW(Internal, who(), ": the graph has a cycle through ", node_label(*n));
  }
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    Step& s = steps_[i];
    s.last_use = i;
    for (const NodeRef& in : s.node->inputs()) {
      const std::size_t j = index.at(in.get());
      s.in.push_back(j);
      steps_[j].last_use = std::max(steps_[j].last_use, i);
    }
    if (!s.node->is_input()) layers_.push_back(s.node->layer());
  }
  for (const NodeRef& in : inputs_) input_steps_.push_back(index.at(in.get()));
  for (const NodeRef& out : outputs_) output_steps_.push_back(index.at(out.get()));

  // Unique names over inputs and layers, in schedule order (Keras's suffixes).
  std::set<std::string> taken;
  for (Step& s : steps_) {
    const std::string n = detail::unique_name(taken, s.node->name());
    if (n != s.node->name()) {
      if (s.node->is_input())
        s.node->input_name_ = n;
      else
        s.node->layer()->set_name(n);
    }
    taken.insert(n);
  }
}

void Model::build(Device device, DType dtype, std::uint64_t seed) {
  RECUR_CHECK(!built(), Value, who(), " is already built");
  dtype_ = dtype;
  // Inputs feeding a layer that takes ids are int32; the rest float.
  std::map<std::size_t, const Layer*> ids_user, float_user;
  for (const Step& s : steps_) {
    if (s.node->is_input()) continue;
    const Layer& l = *s.node->layer();
    for (std::size_t j : s.in) {
      if (!l.float_input()) {
        RECUR_CHECK(steps_[j].node->is_input(), Value, who(), ": ", l.type(), " '", l.name(),
                    "' takes integer ids, so it must be applied to an Input, not to ",
                    node_label(*steps_[j].node));
        ids_user.emplace(j, &l);
      } else if (steps_[j].node->is_input()) {
        float_user.emplace(j, &l);
      }
    }
  }
  for (const auto& [j, l] : ids_user) {
    const auto f = float_user.find(j);
    RECUR_CHECK(f == float_user.end(), Value, who(), ": ", node_label(*steps_[j].node), " feeds ",
                l->type(), " '", l->name(), "' (int32 ids) and ", f->second->type(), " '",
                f->second->name(), "' (", dtype_name(dtype), "): give each its own Input");
  }
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    Step& s = steps_[i];
    if (s.node->is_input()) {
      s.shape = s.node->shape();
      s.dtype = ids_user.count(i) ? DType::i32 : dtype;
      continue;
    }
    std::vector<Shape> shapes;
    for (std::size_t j : s.in) shapes.push_back(steps_[j].shape);
    if (s.merge != nullptr)
      s.merge->build(shapes, dtype);
    else
      s.node->layer()->build(shapes.front(), dtype);
    s.shape = s.node->layer()->output_shape();
    s.dtype = dtype;
  }
  store_ = detail::make_parameters(layers_, device, dtype, seed);
  arena_device_ = device;
}

Layer& Model::layer(const std::string& name) const {
  for (const LayerPtr& l : layers_)
    if (l->name() == name) return *l;
  RECUR_THROW(Value, who(), ": no layer named '", name, "'");
}

const Shape& Model::input_shape(std::size_t i) const {
  RECUR_CHECK(i < inputs_.size(), Value, who(), ": no input ", i, " (it has ", inputs_.size(), ")");
  return inputs_[i]->shape();
}

const Shape& Model::output_shape(std::size_t i) const {
  RECUR_CHECK(built(), Value, who(), " is not built");
  RECUR_CHECK(i < outputs_.size(), Value, who(), ": no output ", i, " (it has ", outputs_.size(), ")");
  return steps_[output_steps_[i]].shape;
}

DType Model::input_dtype(std::size_t i) const {
  RECUR_CHECK(built(), Value, who(), " is not built");
  RECUR_CHECK(i < inputs_.size(), Value, who(), ": no input ", i, " (it has ", inputs_.size(), ")");
  return steps_[input_steps_[i]].dtype;
}

Device Model::device() const { return parameters().device(); }

std::int64_t Model::count_params() const {
  std::int64_t n = 0;
  for (const LayerPtr& l : layers_) n += l->count_params();
  return n;
}

ParameterStore& Model::parameters() {
  RECUR_CHECK(built(), Value, who(), " is not built");
  return *store_;
}
const ParameterStore& Model::parameters() const {
  RECUR_CHECK(built(), Value, who(), " is not built");
  return *store_;
}

std::string Model::summary() const {
  constexpr int kName = 34, kShape = 26, kParams = 12, kWidth = 98;
  const std::string rule(kWidth, '_'), dbl(kWidth, '=');
  std::ostringstream s;
  s << "Model: \"" << name_ << "\"\n" << rule << "\n";
  s << std::left << std::setw(kName) << " Layer (type)" << std::setw(kShape) << "Output Shape"
    << std::setw(kParams) << "Param #" << "Connected to\n"
    << dbl << "\n";
  for (std::size_t i = 0; i < steps_.size(); ++i) {
    const Node& n = *steps_[i].node;
    const std::string type = n.is_input() ? "InputLayer" : n.layer()->type();
    const bool known = n.is_input() || n.layer()->built();
    std::vector<std::string> links;
    for (const NodeRef& in : n.inputs()) links.push_back(in->name() + "[0][0]");
    if (links.empty()) links.push_back("-");
    for (std::size_t k = 0; k + 1 < links.size(); ++k) links[k] += ",";
    const std::vector<std::string> cell = detail::wrap_cell(n.name() + " (" + type + ")", kName - 2);
    s << std::left << std::setw(kName) << (" " + cell[0]) << std::setw(kShape)
      << (known ? keras_shape_str(n.shape()) : "?") << std::setw(kParams)
      << detail::thousands(n.is_input() ? 0 : n.layer()->count_params()) << links[0] << "\n";
    for (std::size_t k = 1; k < std::max(links.size(), cell.size()); ++k) {
      const std::string name = k < cell.size() ? " " + cell[k] : std::string();
      s << std::left << std::setw(k < links.size() ? kName + kShape + kParams : 0) << name
        << (k < links.size() ? links[k] : std::string()) << "\n";
    }
    s << (i + 1 < steps_.size() ? std::string() : dbl) << "\n";
  }
  s << detail::param_totals(count_params(), dtype_) << rule << "\n";
  return s.str();
}

// ---- Model: running -------------------------------------------------------------------
void Model::check_inputs(const std::vector<Tensor>& x, const std::vector<Tensor>& masks) const {
  auto names = [this] {
    std::string s;
    for (std::size_t i = 0; i < inputs_.size(); ++i) s += (i ? ", '" : "'") + inputs_[i]->name() + "'";
    return s;
  };
  RECUR_CHECK(x.size() == inputs_.size(), Value, who(), ": ", x.size(), " input tensor(s) given, the model has ",
              inputs_.size(), " input(s) (", names(), ")");
  RECUR_CHECK(masks.empty() || masks.size() == inputs_.size(), Value, who(), ": ", masks.size(),
              " masks given; give none or one per input (", names(), ")");
  for (std::size_t k = 0; k < x.size(); ++k) {
    const Step& s = steps_[input_steps_[k]];
    const std::string in = "input '" + s.node->name() + "'";
    RECUR_CHECK(x[k].defined(), Value, who(), ": ", in, " is an undefined tensor");
    RECUR_CHECK(x[k].dtype() == s.dtype, DType, who(), ": ", in, " is ", dtype_name(x[k].dtype()),
                ", expected ", dtype_name(s.dtype));
    RECUR_CHECK(x[k].device() == store_->device(), Device, who(), ": ", in, " is on ",
                x[k].device().str(), ", the model on ", store_->device().str());
    RECUR_CHECK(fits(s.shape, x[k].shape()), Shape, who(), ": ", in, " of shape ",
                shape_str(x[k].shape()), " does not match the expected ", keras_shape_str(s.shape));
    RECUR_CHECK(x[k].dim(0) == x[0].dim(0), Shape, who(), ": ", in, " has a batch of ", x[k].dim(0),
                ", input '", inputs_[0]->name(), "' of ", x[0].dim(0));
    if (!masks.empty() && masks[k].defined()) {
      const Tensor& m = masks[k];
      RECUR_CHECK(x[k].ndim() >= 2 && m.shape() == (Shape{x[k].dim(0), x[k].dim(1)}), Shape, who(),
                  ": the mask of ", in, " has shape ", shape_str(m.shape()), ", the input ",
                  shape_str(x[k].shape()), " (expected [batch, time])");
      RECUR_CHECK(m.dtype() == dtype_ && m.device() == x[k].device(), DType, who(), ": the mask of ",
                  in, " must be ", dtype_name(dtype_), " on ", x[k].device().str());
    }
  }
}

std::vector<Model::Output> Model::forward(const std::vector<Tensor>& x, const std::vector<Tensor>& masks,
                                          bool training) {
  RECUR_CHECK(built(), Value, who(), ": forward() before build()");
  check_inputs(x, masks);
  const std::size_t n = steps_.size();
  std::vector<Tensor> value(n), mask(n);
  std::vector<bool> keep(n, false);  // outputs stay to the end
  for (std::size_t i : output_steps_) keep[i] = true;
  for (std::size_t k = 0; k < x.size(); ++k) {
    value[input_steps_[k]] = x[k];
    if (!masks.empty()) mask[input_steps_[k]] = masks[k];
  }
  for (std::size_t i = 0; i < n; ++i) {
    const Step& s = steps_[i];
    if (s.node->is_input()) continue;
    if (s.merge != nullptr) {
      std::vector<Tensor> xs, ms;
      for (std::size_t j : s.in) {
        xs.push_back(value[j]);
        ms.push_back(mask[j]);
      }
      value[i] = s.merge->forward(xs, ms, training);
      mask[i] = s.merge->merged_mask(ms);
    } else {
      Layer& l = *s.node->layer();
      const std::size_t j = s.in.front();
      value[i] = l.forward(value[j], mask[j], training);
      mask[i] = l.output_mask(value[j], mask[j]);
    }
    for (std::size_t j : s.in)  // values read for the last time
      if (steps_[j].last_use == i && !keep[j]) value[j] = mask[j] = Tensor();
  }
  std::vector<Output> out;
  last_output_shapes_.clear();
  for (std::size_t i : output_steps_) {
    out.push_back({value[i], mask[i]});
    last_output_shapes_.push_back(value[i].shape());
  }
  return out;
}

void Model::backward(const std::vector<Tensor>& d_outputs) {
  RECUR_CHECK(built(), Value, who(), ": backward() before build()");
  RECUR_CHECK(!last_output_shapes_.empty(), Value, who(),
              ": backward() needs a forward() with training = true first");
  RECUR_CHECK(d_outputs.size() == outputs_.size(), Value, who(), ": ", d_outputs.size(),
              " output gradient(s) given, the model has ", outputs_.size(), " output(s)");
  std::vector<Tensor> grad(steps_.size());
  auto accumulate = [&](std::size_t j, const Tensor& g) {
    if (steps_[j].node->is_input()) return;  // inputs get no gradient
    grad[j] = grad[j].defined() ? ops::add(grad[j], g) : g;
  };
  for (std::size_t k = 0; k < d_outputs.size(); ++k) {
    const Tensor& d = d_outputs[k];
    if (!d.defined()) continue;
    RECUR_CHECK(d.dtype() == dtype_, DType, who(), ": the gradient of output ", k, " is ",
                dtype_name(d.dtype()), ", expected ", dtype_name(dtype_));
    RECUR_CHECK(d.shape() == last_output_shapes_[k], Shape, who(), ": the gradient of output ", k,
                " ('", outputs_[k]->name(), "') has shape ", shape_str(d.shape()),
                ", the output had ", shape_str(last_output_shapes_[k]));
    accumulate(output_steps_[k], d);
  }
  for (std::size_t i = steps_.size(); i-- > 0;) {
    const Step& s = steps_[i];
    if (s.node->is_input() || !grad[i].defined()) continue;  // no gradient reaches this node
    if (s.merge != nullptr) {
      const std::vector<Tensor> dxs = s.merge->backward(grad[i]);
      for (std::size_t k = 0; k < s.in.size(); ++k)
        if (dxs[k].defined()) accumulate(s.in[k], dxs[k]);
    } else {
      const Tensor dx = s.node->layer()->backward(grad[i]);
      if (dx.defined()) accumulate(s.in.front(), dx);
      // (Each layer is applied once: its gradients are complete now.)
      if (hook_ != nullptr) hook_->on_layer_backward(*s.node->layer());
    }
    grad[i] = Tensor();
  }
}

Tensor Model::predict(const std::vector<Tensor>& x, const std::vector<Tensor>& masks) {
  RECUR_CHECK(outputs_.size() == 1, Value, who(), ": predict() returns one output; this model has ",
              outputs_.size(), " (use forward())");
  return forward(x, masks, false).front().y;
}

void Model::reset_states() {
  for (const LayerPtr& l : layers_) l->reset_states();
}

void Model::compile(const CompileOptions& options) {
  RECUR_CHECK(built(), Value, who(), ": compile() before build()");
  detail::check_compile_options(who(), options);
  compile_ = std::make_unique<CompileOptions>(options);
  optimizer_ = std::make_unique<Optimizer>(options.optimizer, *store_);
}

const CompileOptions& Model::compile_options() const {
  RECUR_CHECK(compile_ != nullptr, Value, who(), " is not compiled");
  return *compile_;
}

Optimizer& Model::optimizer() {
  RECUR_CHECK(optimizer_ != nullptr, Value, who(), " is not compiled");
  return *optimizer_;
}
const Optimizer& Model::optimizer() const {
  RECUR_CHECK(optimizer_ != nullptr, Value, who(), " is not compiled");
  return *optimizer_;
}

PendingBatchLogs Model::run_batch(const std::vector<Tensor>& x, const Tensor& y,
                             const std::vector<Tensor>& masks, const Tensor& sample_weight, bool train) {
  RECUR_CHECK(compiled(), Value, who(), ": compile() before training or evaluating");
  RECUR_CHECK(outputs_.size() == 1, Value, who(), ": training and evaluation need a model with one "
              "output; this one has ", outputs_.size(), " (use forward() and backward())");
  std::vector<Tensor> keyed = x;
  keyed.insert(keyed.end(), masks.begin(), masks.end());
  const detail::StepScope scope(store_->device(), region_owner(), train, {&y, &sample_weight}, keyed,
                                step_memory_, train_step_memory_);
  if (train) store_->zero_grads();
  const Output out = forward(x, masks, train).front();
  const detail::BatchLoss l =
      detail::batch_loss(who(), *compile_, dtype_, out.y, out.mask, y, sample_weight);
  if (train) {
    if (hook_ != nullptr) hook_->on_backward_begin();
    backward({scaled_loss_grad(l.grad)});
    if (hook_ != nullptr) hook_->on_backward_end();
    optimizer_->step();
  }
  last_weight_ = double(x.front().dim(0));
  return detail::read_logs_async(l);
}

Model::Logs Model::train_on_batch(const std::vector<Tensor>& x, const Tensor& y,
                                  const std::vector<Tensor>& masks, const Tensor& sample_weight) {
  return run_batch(x, y, masks, sample_weight, true).read();
}

Model::Logs Model::test_on_batch(const std::vector<Tensor>& x, const Tensor& y,
                                 const std::vector<Tensor>& masks, const Tensor& sample_weight) {
  return run_batch(x, y, masks, sample_weight, false).read();
}

}  // namespace recur
