// Out-of-line construction and throwing of recur::Error.
#include "recur/common/error.h"

namespace recur {

const char* error_kind_name(ErrorKind kind) {
  switch (kind) {
    case ErrorKind::Shape: return "shape error";
    case ErrorKind::DType: return "dtype error";
    case ErrorKind::Device: return "device error";
    case ErrorKind::Value: return "value error";
    case ErrorKind::IO: return "I/O error";
    case ErrorKind::OutOfMemory: return "out of memory";
    case ErrorKind::Unsupported: return "unsupported";
    case ErrorKind::Cuda: return "CUDA error";
    case ErrorKind::Cublas: return "cuBLAS error";
    case ErrorKind::Cudnn: return "cuDNN error";
    case ErrorKind::Internal: return "internal error";
    case ErrorKind::Distributed: return "distributed error";
  }
  return "error";
}

namespace {
std::string format_what(ErrorKind kind, const std::string& message, const std::string& statement,
                        const std::string& file, int line) {
  std::string what = std::string("recur: ") + error_kind_name(kind) + ": " + message;
  if (!statement.empty() || !file.empty()) {
    what += " [";
    if (!statement.empty()) what += "`" + statement + "` at ";
    what += file + ":" + std::to_string(line) + "]";
  }
  return what;
}
}  // namespace

Error::Error(ErrorKind kind, std::string message, std::string statement, std::string file,
             int line)
    : std::runtime_error(format_what(kind, message, statement, file, line)),
      kind_(kind),
      message_(std::move(message)),
      statement_(std::move(statement)),
      file_(std::move(file)),
      line_(line) {}

namespace detail {
void throw_error(ErrorKind kind, const std::string& message, const char* statement,
                 const char* file, int line) {
  std::string s = statement ? statement : "";
  std::string f = file ? file : "";
  switch (kind) {
    case ErrorKind::Shape: throw ShapeError(message, s, f, line);
    case ErrorKind::DType: throw DTypeError(message, s, f, line);
    case ErrorKind::Device: throw DeviceError(message, s, f, line);
    case ErrorKind::Value: throw ValueError(message, s, f, line);
    case ErrorKind::IO: throw IOError(message, s, f, line);
    case ErrorKind::OutOfMemory: throw OutOfMemoryError(message, s, f, line);
    case ErrorKind::Unsupported: throw UnsupportedError(message, s, f, line);
    case ErrorKind::Cuda: throw CudaError(message, s, f, line);
    case ErrorKind::Cublas: throw CublasError(message, s, f, line);
    case ErrorKind::Cudnn: throw CudnnError(message, s, f, line);
    case ErrorKind::Internal: throw InternalError(message, s, f, line);
    case ErrorKind::Distributed: throw DistributedError(message, s, f, line);
  }
  throw InternalError(message, s, f, line);
}
}  // namespace detail
}  // namespace recur
