// The recur::Error family. Every failure recur reports is one of these: the
// message names the problem in the user's terms, then the failing statement
// and file:line. Library code throws; it never calls exit().
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace recur {

enum class ErrorKind {
  Shape,        // tensor shapes do not fit the operation
  DType,        // element type not accepted
  Device,       // device missing, wrong device, tensors on different devices
  Value,        // an argument's value is out of range (lengths, sizes, NaN)
  IO,           // files: missing, malformed, truncated
  OutOfMemory,  // an allocation failed after the cache was emptied
  Unsupported,  // a backend cannot run this op/shape (see Backend::supports)
  Cuda,         // a CUDA runtime or kernel launch error
  Cublas,       // a cuBLAS status other than success
  Cudnn,        // a cuDNN status other than success
  Internal,     // a broken invariant inside recur: a bug
  Distributed,  // a collective across ranks failed or timed out (communicator.h)
};

const char* error_kind_name(ErrorKind kind);

class Error : public std::runtime_error {
 public:
  Error(ErrorKind kind, std::string message, std::string statement, std::string file, int line);
  ErrorKind kind() const noexcept { return kind_; }
  // The problem alone, without statement and location.
  const std::string& message() const noexcept { return message_; }
  const std::string& statement() const noexcept { return statement_; }
  const std::string& file() const noexcept { return file_; }
  int line() const noexcept { return line_; }

 private:
  ErrorKind kind_;
  std::string message_, statement_, file_;
  int line_;
};

#define RECUR_DEFINE_ERROR(Name, Kind)                                                 \
  class Name : public Error {                                                          \
   public:                                                                             \
    Name(std::string m, std::string s, std::string f, int l)                           \
        : Error(ErrorKind::Kind, std::move(m), std::move(s), std::move(f), l) {}       \
  };
RECUR_DEFINE_ERROR(ShapeError, Shape)
RECUR_DEFINE_ERROR(DTypeError, DType)
RECUR_DEFINE_ERROR(DeviceError, Device)
RECUR_DEFINE_ERROR(ValueError, Value)
RECUR_DEFINE_ERROR(IOError, IO)
RECUR_DEFINE_ERROR(OutOfMemoryError, OutOfMemory)
RECUR_DEFINE_ERROR(UnsupportedError, Unsupported)
RECUR_DEFINE_ERROR(CudaError, Cuda)
RECUR_DEFINE_ERROR(CublasError, Cublas)
RECUR_DEFINE_ERROR(CudnnError, Cudnn)
RECUR_DEFINE_ERROR(DistributedError, Distributed)
RECUR_DEFINE_ERROR(InternalError, Internal)
#undef RECUR_DEFINE_ERROR

namespace detail {

template <class... Args>
std::string concat(Args&&... args) {
  std::ostringstream os;
  (os << ... << std::forward<Args>(args));
  return os.str();
}

// Throws the Error subclass for `kind`. Out of line so that call sites stay small.
[[noreturn]] void throw_error(ErrorKind kind, const std::string& message, const char* statement,
                              const char* file, int line);

}  // namespace detail
}  // namespace recur

// RECUR_CHECK(cond, Kind, parts...): throws recur::<Kind>Error when cond is false;
// the parts are streamed into the message.
#define RECUR_CHECK(cond, kind, ...)                                                         \
  do {                                                                                       \
    if (!(cond))                                                                             \
      ::recur::detail::throw_error(::recur::ErrorKind::kind,                                 \
                                   ::recur::detail::concat(__VA_ARGS__), #cond, __FILE__,   \
                                   __LINE__);                                                \
  } while (0)

#define RECUR_THROW(kind, ...)                                                                \
  ::recur::detail::throw_error(::recur::ErrorKind::kind, ::recur::detail::concat(__VA_ARGS__), \
                               "", __FILE__, __LINE__)
