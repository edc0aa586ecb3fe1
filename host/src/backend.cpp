// The backend registry: one backend per device, created on first use and kept
// for the life of the process (never destroyed, so no CUDA call runs during
// static destruction, after the driver may have shut down).
#include "recur/host/backend.h"

#include <mutex>
#include <vector>

#include "backends.h"
#include "cuda_api.h"

namespace recur {

const char* op_kind_name(OpKind op) {
  switch (op) {
    case OpKind::Fill: return "fill";
    case OpKind::Copy: return "copy";
    case OpKind::Gemm: return "gemm";
    case OpKind::Unary: return "unary";
    case OpKind::Binary: return "binary";
    case OpKind::Reduce: return "reduce";
    case OpKind::LstmStep: return "lstm_step";
    case OpKind::GruStep: return "gru_step";
    case OpKind::RnnStep: return "rnn_step";
    case OpKind::Transpose01: return "transpose01";
    case OpKind::LstmStepBackward: return "lstm_step_backward";
    case OpKind::GruStepBackward: return "gru_step_backward";
    case OpKind::RnnStepBackward: return "rnn_step_backward";
    case OpKind::GruResetBefore: return "gru_reset_before";
    case OpKind::Loss: return "loss";
    case OpKind::SumSquares: return "sum_squares";
    case OpKind::Clip: return "clip";
    case OpKind::OptimizerStep: return "optimizer_step";
    case OpKind::Conv1d: return "conv1d";
    case OpKind::Pool1d: return "pool1d";
    case OpKind::Embedding: return "embedding";
    case OpKind::Activation: return "activation";
    case OpKind::Dropout: return "dropout";
    case OpKind::LengthBuckets: return "length_buckets";
    case OpKind::GruSequence: return "gru_sequence";
    case OpKind::LstmSequence: return "lstm_sequence";
    case OpKind::GruSequenceBackward: return "gru_sequence_backward";
    case OpKind::LstmSequenceBackward: return "lstm_sequence_backward";
    case OpKind::RnnSequence: return "rnn_sequence";
    case OpKind::RnnSequenceBackward: return "rnn_sequence_backward";
    case OpKind::GruRbSequence: return "gru_rb_sequence";
    case OpKind::GruRbSequenceBackward: return "gru_rb_sequence_backward";
  }
  return "?";
}

namespace {
// Values already on the host.
class ReadyRead final : public HostRead {
 public:
  explicit ReadyRead(std::vector<double> v) : values_(std::move(v)) {}
  const std::vector<double>& wait() override { return values_; }

 private:
  std::vector<double> values_;
};
}  // namespace

std::unique_ptr<HostRead> Backend::read_async(const std::vector<Tensor>& tensors) {
  std::vector<double> values;
  for (const Tensor& t : tensors) {
    switch (t.dtype()) {
      case DType::f32: for (float v : t.to_vector<float>()) values.push_back(double(v)); break;
      case DType::f64: for (double v : t.to_vector<double>()) values.push_back(v); break;
      case DType::i32: for (std::int32_t v : t.to_vector<std::int32_t>()) values.push_back(double(v)); break;
      default: RECUR_THROW(DType, "read_async: ", dtype_name(t.dtype()), " tensors cannot be read");
    }
  }
  return std::make_unique<ReadyRead>(std::move(values));
}

void Backend::gru_sequence(const GruSequence&) {
  RECUR_THROW(Unsupported, "gru_sequence on ", device().str(), ": not implemented by this backend");
}
void Backend::gru_sequence_backward(const GruSequenceBackward&) {
  RECUR_THROW(Unsupported, "gru_sequence_backward on ", device().str(), ": not implemented by this backend");
}
void Backend::lstm_sequence(const LstmSequence&) {
  RECUR_THROW(Unsupported, "lstm_sequence on ", device().str(), ": not implemented by this backend");
}
void Backend::lstm_sequence_backward(const LstmSequenceBackward&) {
  RECUR_THROW(Unsupported, "lstm_sequence_backward on ", device().str(), ": not implemented by this backend");
}
void Backend::rnn_sequence(const RnnSequence&) {
  RECUR_THROW(Unsupported, "rnn_sequence on ", device().str(), ": not implemented by this backend");
}
void Backend::rnn_sequence_backward(const RnnSequenceBackward&) {
  RECUR_THROW(Unsupported, "rnn_sequence_backward on ", device().str(), ": not implemented by this backend");
}
void Backend::gru_rb_sequence(const GruRbSequence&) {
  RECUR_THROW(Unsupported, "gru_rb_sequence on ", device().str(), ": not implemented by this backend");
}
void Backend::gru_rb_sequence_backward(const GruRbSequenceBackward&) {
  RECUR_THROW(Unsupported, "gru_rb_sequence_backward on ", device().str(), ": not implemented by this backend");
}

Backend& backend(Device device) {
  if (device.is_cpu()) {
    static Backend* cpu = make_cpu_backend().release();
    return *cpu;
  }
  require_device(device);
#if defined(RECUR_HAVE_CUDA)
  static std::mutex mutex;
  static auto* gpus = new std::vector<std::unique_ptr<Backend>>();
  std::lock_guard<std::mutex> lock(mutex);
  if (gpus->size() <= std::size_t(device.index)) gpus->resize(device.index + 1);
  auto& slot = (*gpus)[device.index];
  if (!slot) slot = cuda_host::make_backend(device.index);
  return *slot;
#else
  RECUR_THROW(Internal, "require_device accepted ", device.str(), " without CUDA");
#endif
}

}  // namespace recur
