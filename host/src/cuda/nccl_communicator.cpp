// The NCCL communicator (communicator.h): one ncclComm_t per job, its unique id
// made on rank 0 and broadcast over MPI; all-reduces on the device's stream,
// waited for by polling an event against the collective timeout (and
// ncclCommGetAsyncError, so a peer's failure surfaces as an error, not a hang).
// Compiled only when CUDA, NCCL and MPI are all found. NOT YET RUN ON A GPU.
#include <cuda_runtime.h>
#include <mpi.h>
#include <nccl.h>

#include <string>

#include "../communicator_detail.h"
#include "recur/common/error.h"
#include "recur/host/backend.h"

namespace recur {

namespace {

#define RECUR_NCCL_CHECK(call, rank)                                                                  \
  do {                                                                                                \
    const ncclResult_t recur_nccl_rc_ = (call);                                                       \
    if (recur_nccl_rc_ != ncclSuccess) {                                                              \
      detail_dist::mark_failed();                                                                     \
      RECUR_THROW(Distributed, "rank ", rank, ": ", #call, " failed: ", ncclGetErrorString(recur_nccl_rc_)); \
    }                                                                                                 \
  } while (0)

#define RECUR_NCCL_CUDA_CHECK(call, rank)                                                             \
  do {                                                                                                \
    const cudaError_t recur_cuda_rc_ = (call);                                                        \
    if (recur_cuda_rc_ != cudaSuccess)                                                                \
      RECUR_THROW(Cuda, "rank ", rank, ": ", #call, " failed: ", cudaGetErrorString(recur_cuda_rc_)); \
  } while (0)

// Sets the current device for a scope, restoring the previous one.
class DeviceScope {
 public:
  explicit DeviceScope(int index) {
    if (cudaGetDevice(&previous_) != cudaSuccess) previous_ = -1;
    if (previous_ != index) (void)cudaSetDevice(index);
  }
  ~DeviceScope() {
    if (previous_ >= 0) (void)cudaSetDevice(previous_);
  }
  DeviceScope(const DeviceScope&) = delete;
  DeviceScope& operator=(const DeviceScope&) = delete;

 private:
  int previous_ = -1;
};

class NcclPending final : public PendingCollective {
 public:
  NcclPending(ncclComm_t comm, cudaEvent_t event, int device, int rank, double timeout, std::string what)
      : comm_(comm), event_(event), device_(device), rank_(rank), timeout_(timeout), what_(std::move(what)) {}
  ~NcclPending() override { (void)cudaEventDestroy(event_); }
  bool progress() override {
    if (done_) return true;
    DeviceScope scope(device_);
    ncclResult_t async = ncclSuccess;
    RECUR_NCCL_CHECK(ncclCommGetAsyncError(comm_, &async), rank_);
    RECUR_NCCL_CHECK(async, rank_);
    const cudaError_t q = cudaEventQuery(event_);
    if (q == cudaErrorNotReady) return false;
    RECUR_NCCL_CUDA_CHECK(q, rank_);
    done_ = true;
    return true;
  }
  void wait() override {
    if (done_) return;
    detail_dist::poll_until([&] { return progress(); }, timeout_, rank_, what_, [&] {
      detail_dist::mark_failed();
      (void)ncclCommAbort(comm_);  // frees the GPU from the stuck kernel
    });
  }

 private:
  ncclComm_t comm_;
  cudaEvent_t event_;
  int device_, rank_;
  double timeout_;
  std::string what_;
  bool done_ = false;
};

class NcclCommunicator final : public Communicator {
 public:
  NcclCommunicator(MPI_Comm mpi, Device device) : device_(device) {
    RECUR_CHECK(device.is_cuda(), Device, "NCCL communicator: ", device.str(), " is not a GPU");
    MPI_Comm_rank(mpi, &rank_);
    MPI_Comm_size(mpi, &size_);
    local_rank_ = launch_info().local_rank;
    timeout_ = collective_timeout_seconds();
    ncclUniqueId id;
    if (rank_ == 0) RECUR_NCCL_CHECK(ncclGetUniqueId(&id), rank_);
    MPI_Request req = MPI_REQUEST_NULL;
    RECUR_CHECK(MPI_Ibcast(&id, int(sizeof(id)), MPI_BYTE, 0, mpi, &req) == MPI_SUCCESS, Distributed, "rank ",
                rank_, ": broadcasting NCCL's unique id over MPI failed");
    detail_dist::poll_until(
        [&] {
          int flag = 0;
          MPI_Test(&req, &flag, MPI_STATUS_IGNORE);
          return flag != 0;
        },
        timeout_, rank_, "the broadcast of NCCL's unique id", [] { detail_dist::mark_failed(); });
    DeviceScope scope(device_.index);
    // Blocking set-up (every rank has just answered the id's broadcast); the
    // collectives after it are bounded by the timeout (NcclPending::wait).
    RECUR_NCCL_CHECK(ncclCommInitRank(&comm_, size_, id, rank_), rank_);
    stream_ = static_cast<cudaStream_t>(backend(device_).native_stream());
  }
  ~NcclCommunicator() override {
    if (comm_ != nullptr) (void)ncclCommDestroy(comm_);
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string name() const override { return "nccl"; }

  std::unique_ptr<PendingCollective> all_reduce_sum_start(const Tensor& t) override {
    check(t, "all-reduce");
    RECUR_CHECK(t.dtype() == DType::f32 || t.dtype() == DType::f64, DType,
                "NCCL all-reduce: sums float32 or float64 tensors, not ", dtype_name(t.dtype()));
    DeviceScope scope(device_.index);
    const ncclDataType_t type = t.dtype() == DType::f32 ? ncclFloat32 : ncclFloat64;
    RECUR_NCCL_CHECK(ncclAllReduce(t.raw_data(), t.raw_data(), std::size_t(t.numel()), type, ncclSum, comm_, stream_),
                     rank_);
    return std::make_unique<NcclPending>(comm_, record(), device_.index, rank_, timeout_,
                                         "an NCCL all-reduce of " + std::to_string(t.numel()) + " values");
  }

  void broadcast(const Tensor& t, int root) override {
    check(t, "broadcast");
    RECUR_CHECK(root >= 0 && root < size_, Value, "NCCL broadcast: root ", root, " is not a rank of ", size_);
    DeviceScope scope(device_.index);
    RECUR_NCCL_CHECK(ncclBroadcast(t.raw_data(), t.raw_data(), t.nbytes(), ncclUint8, root, comm_, stream_), rank_);
    NcclPending(comm_, record(), device_.index, rank_, timeout_,
                "an NCCL broadcast of " + std::to_string(t.nbytes()) + " bytes")
        .wait();
  }

  void all_reduce_sum(std::vector<double>& v) override {
    // Few values (logs): through the device, so that one communicator serves all.
    Tensor t = Tensor::from_vector(v, {std::int64_t(v.size())}, device_);
    all_reduce_sum_start(t)->wait();
    v = t.to_vector<double>();
  }
  using Communicator::all_reduce_sum;

 private:
  void check(const Tensor& t, const char* what) const {
    RECUR_CHECK(t.defined(), Value, "NCCL ", what, ": an undefined tensor");
    RECUR_CHECK(t.device() == device_, Device, "NCCL ", what, ": the tensor is on ", t.device().str(),
                ", the communicator on ", device_.str());
  }
  cudaEvent_t record() {
    cudaEvent_t e = nullptr;
    RECUR_NCCL_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming), rank_);
    RECUR_NCCL_CUDA_CHECK(cudaEventRecord(e, stream_), rank_);
    return e;
  }

  Device device_;
  ncclComm_t comm_ = nullptr;
  cudaStream_t stream_ = nullptr;
  int rank_ = 0, size_ = 1, local_rank_ = 0;
};

}  // namespace

bool nccl_available() { return true; }

std::string nccl_version() {
  int v = 0;
  if (ncclGetVersion(&v) != ncclSuccess) return "unknown NCCL version";
  // NCCL_VERSION_CODE since 2.9: major * 10000 + minor * 100 + patch.
  return "NCCL " + std::to_string(v / 10000) + "." + std::to_string((v / 100) % 100) + "." + std::to_string(v % 100);
}

std::shared_ptr<Communicator> detail_dist::make_nccl_communicator(void* mpi_comm, Device device) {
  return std::make_shared<NcclCommunicator>(*static_cast<MPI_Comm*>(mpi_comm), device);
}

}  // namespace recur
