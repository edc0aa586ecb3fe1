// Communicators (communicator.h): the launch environment, the MPI world and
// its timed collectives. NCCL's lives in cuda/nccl_communicator.cpp.
#include "recur/host/communicator.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <mutex>
#include <string>
#include <thread>

#include "communicator_detail.h"
#include "recur/common/error.h"

#if defined(RECUR_HAVE_MPI)
#include <mpi.h>
#endif

namespace recur {

namespace {

bool read_int(const char* name, int& out) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return false;
  char* end = nullptr;
  const long x = std::strtol(v, &end, 10);
  if (end == v || *end != '\0' || x < 0 || x > 1000000) return false;
  out = int(x);
  return true;
}

}  // namespace

LaunchInfo launch_info() {
  LaunchInfo info;
  struct Vars {
    const char *rank, *size, *local_rank, *local_size;
  };
  // Open MPI, then the PMI family (MPICH, Intel MPI, PMIx), then Slurm's srun.
  const Vars vars[] = {
      {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK", "OMPI_COMM_WORLD_LOCAL_SIZE"},
      {"PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
      {"PMIX_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
      {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"},
  };
  for (const Vars& v : vars) {
    int rank = 0, size = 1;
    if (!read_int(v.rank, rank) || !read_int(v.size, size) || size < 1 || rank >= size) continue;
    info.rank = rank;
    info.size = size;
    info.source = v.rank;
    if (!read_int(v.local_rank, info.local_rank)) info.local_rank = rank;
    if (!read_int(v.local_size, info.local_size) || info.local_size < 1) info.local_size = size;
    return info;
  }
  return info;
}

double collective_timeout_seconds() {
  const char* v = std::getenv("RECUR_DIST_TIMEOUT");
  if (v == nullptr || *v == '\0') return 300;
  char* end = nullptr;
  const double s = std::strtod(v, &end);
  RECUR_CHECK(end != v && *end == '\0' && std::isfinite(s) && s > 0, Value, "RECUR_DIST_TIMEOUT='", v,
              "': give the collective timeout as a positive number of seconds");
  return s;
}

void Communicator::set_timeout_seconds(double seconds) {
  RECUR_CHECK(std::isfinite(seconds) && seconds > 0, Value,
              "Communicator: the collective timeout must be a positive number of seconds, got ", seconds);
  timeout_ = seconds;
}

void detail_dist::poll_until(const std::function<bool()>& done, double timeout, int rank, const std::string& what,
                             const std::function<void()>& on_timeout) {
  using clock = std::chrono::steady_clock;
  const auto start = clock::now();
  const auto deadline = start + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(timeout));
  // MPI advances a collective only inside its calls (here MPI_Test), so polls
  // come back to back (yielding the core to the other ranks) for the first
  // 50 ms; a rank that waits longer is waiting for a slow or failed peer, and
  // sleeps 1 ms between polls to leave the CPU to the others.
  for (;;) {
    if (done()) return;
    const auto now = clock::now();
    if (now >= deadline) {
      if (on_timeout) on_timeout();
      RECUR_THROW(Distributed, "rank ", rank, ": ", what, " did not complete within ", timeout,
                  " s (RECUR_DIST_TIMEOUT): another rank has failed, was killed or is stuck; "
                  "see the first error of the job");
    }
    if (now - start < std::chrono::milliseconds(50))
      std::this_thread::yield();
    else
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
}

#if defined(RECUR_HAVE_MPI)

namespace {

struct MpiState {
  std::mutex mutex;
  bool we_initialized = false;
  bool failed = false;
  bool finalized = false;
  MPI_Comm comm = MPI_COMM_NULL;
  std::shared_ptr<Communicator> cpu, gpu;
} g_mpi;

std::string mpi_error_text(int code) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(code, text, &len) != MPI_SUCCESS) return "MPI error " + std::to_string(code);
  return std::string(text, std::size_t(len));
}

#define RECUR_MPI_CHECK(call, rank)                                                                 \
  do {                                                                                              \
    const int recur_mpi_rc_ = (call);                                                               \
    if (recur_mpi_rc_ != MPI_SUCCESS) {                                                             \
      g_mpi.failed = true;                                                                          \
      RECUR_THROW(Distributed, "rank ", rank, ": ", #call, " failed: ", mpi_error_text(recur_mpi_rc_)); \
    }                                                                                               \
  } while (0)

MPI_Datatype mpi_type(const Tensor& t, const char* who) {
  if (t.dtype() == DType::f32) return MPI_FLOAT;
  if (t.dtype() == DType::f64) return MPI_DOUBLE;
  RECUR_THROW(DType, who, ": sums float32 or float64 tensors, not ", dtype_name(t.dtype()));
}

// Waits for `req` against the deadline; MPI advances it inside MPI_Test.
void wait_request(MPI_Request& req, int rank, double timeout, const std::string& what) {
  detail_dist::poll_until(
      [&] {
        int flag = 0;
        RECUR_MPI_CHECK(MPI_Test(&req, &flag, MPI_STATUS_IGNORE), rank);
        return flag != 0;
      },
      timeout, rank, what, [] { g_mpi.failed = true; });
}

class MpiPending final : public PendingCollective {
 public:
  MpiPending(MPI_Request req, int rank, double timeout, std::string what)
      : req_(req), rank_(rank), timeout_(timeout), what_(std::move(what)) {}
  ~MpiPending() override {
    // A handle dropped unfinished (an exception unwinding) leaves the request
    // to MPI_Abort or MPI_Finalize; the buffer it names must outlive it, which
    // the parameter store's buffers do.
  }
  bool progress() override {
    if (done_) return true;
    int flag = 0;
    RECUR_MPI_CHECK(MPI_Test(&req_, &flag, MPI_STATUS_IGNORE), rank_);
    done_ = flag != 0;
    return done_;
  }
  void wait() override {
    if (done_) return;
    wait_request(req_, rank_, timeout_, what_);
    done_ = true;
  }

 private:
  MPI_Request req_;
  int rank_;
  double timeout_;
  std::string what_;
  bool done_ = false;
};

class MpiCommunicator final : public Communicator {
 public:
  explicit MpiCommunicator(MPI_Comm comm) : comm_(comm) {
    RECUR_MPI_CHECK(MPI_Comm_rank(comm_, &rank_), -1);
    RECUR_MPI_CHECK(MPI_Comm_size(comm_, &size_), rank_);
    local_rank_ = launch_info().local_rank;
    timeout_ = collective_timeout_seconds();
  }
  int rank() const override { return rank_; }
  int size() const override { return size_; }
  int local_rank() const override { return local_rank_; }
  std::string name() const override { return "mpi"; }

  std::unique_ptr<PendingCollective> all_reduce_sum_start(const Tensor& t) override {
    check_host(t, "all-reduce");
    const MPI_Datatype type = mpi_type(t, "MPI all-reduce");
    RECUR_CHECK(t.numel() <= std::int64_t(0x7fffffff), Value, "MPI all-reduce: ", t.numel(),
                " elements is more than one MPI call takes; use smaller buckets");
    MPI_Request req = MPI_REQUEST_NULL;
    RECUR_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, t.raw_data(), int(t.numel()), type, MPI_SUM, comm_, &req), rank_);
    return std::make_unique<MpiPending>(req, rank_, timeout_,
                                        "an all-reduce of " + std::to_string(t.numel()) + " values");
  }

  void broadcast(const Tensor& t, int root) override {
    check_host(t, "broadcast");
    RECUR_CHECK(root >= 0 && root < size_, Value, "MPI broadcast: root ", root, " is not a rank of ", size_);
    MPI_Request req = MPI_REQUEST_NULL;
    RECUR_MPI_CHECK(MPI_Ibcast(t.raw_data(), int(t.nbytes()), MPI_BYTE, root, comm_, &req), rank_);
    wait_request(req, rank_, timeout_, "a broadcast of " + std::to_string(t.nbytes()) + " bytes");
  }

  void all_reduce_sum(std::vector<double>& v) override {
    MPI_Request req = MPI_REQUEST_NULL;
    RECUR_MPI_CHECK(MPI_Iallreduce(MPI_IN_PLACE, v.data(), int(v.size()), MPI_DOUBLE, MPI_SUM, comm_, &req), rank_);
    wait_request(req, rank_, timeout_, "an all-reduce of " + std::to_string(v.size()) + " host values");
  }
  using Communicator::all_reduce_sum;

 private:
  void check_host(const Tensor& t, const char* what) const {
    RECUR_CHECK(t.defined(), Value, "MPI ", what, ": an undefined tensor");
    RECUR_CHECK(t.device().is_cpu(), Device, "MPI ", what, ": the tensor is on ", t.device().str(),
                "; GPU tensors go through NCCL (world_communicator(cuda))");
  }

  MPI_Comm comm_;
  int rank_ = 0, size_ = 1, local_rank_ = 0;
};

// Initializes MPI once (under g_mpi.mutex) and returns recur's own duplicate of
// MPI_COMM_WORLD, whose errors return instead of aborting.
MPI_Comm mpi_comm_locked() {
  if (g_mpi.comm != MPI_COMM_NULL) return g_mpi.comm;
  RECUR_CHECK(!g_mpi.finalized, Value, "distributed training: MPI was already finalized");
  int initialized = 0;
  MPI_Initialized(&initialized);
  if (!initialized) {
    int provided = 0;
    RECUR_MPI_CHECK(MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided), launch_info().rank);
    g_mpi.we_initialized = true;
  }
  MPI_Comm comm = MPI_COMM_NULL;
  RECUR_MPI_CHECK(MPI_Comm_dup(MPI_COMM_WORLD, &comm), launch_info().rank);
  MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN);
  g_mpi.comm = comm;
  return comm;
}

}  // namespace

bool distributed_available() { return true; }

std::string mpi_version() {
  char text[MPI_MAX_LIBRARY_VERSION_STRING];
  int len = 0;
  if (MPI_Get_library_version(text, &len) != MPI_SUCCESS) return "unknown MPI library";
  std::string s(text, std::size_t(len));
  const std::size_t cut = s.find_first_of(",\n");  // "Open MPI v4.1.4, package: ..." -> "Open MPI v4.1.4"
  if (cut != std::string::npos) s.resize(cut);
  int major = 0, minor = 0;
  MPI_Get_version(&major, &minor);
  return s + " (MPI " + std::to_string(major) + "." + std::to_string(minor) + ")";
}

void detail_dist::mark_failed() { g_mpi.failed = true; }

std::shared_ptr<Communicator> world_communicator(Device device) {
  std::lock_guard<std::mutex> lock(g_mpi.mutex);
  MPI_Comm comm = mpi_comm_locked();
  if (device.is_cpu()) {
    if (!g_mpi.cpu) g_mpi.cpu = std::make_shared<MpiCommunicator>(comm);
    return g_mpi.cpu;
  }
  if (!g_mpi.gpu) g_mpi.gpu = detail_dist::make_nccl_communicator(static_cast<void*>(&comm), device);
  return g_mpi.gpu;
}

void finalize_distributed() {
  std::lock_guard<std::mutex> lock(g_mpi.mutex);
  if (g_mpi.finalized || g_mpi.failed) return;
  g_mpi.cpu.reset();
  g_mpi.gpu.reset();
  if (g_mpi.comm != MPI_COMM_NULL) MPI_Comm_free(&g_mpi.comm);
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (g_mpi.we_initialized && !finalized) MPI_Finalize();
  g_mpi.finalized = true;
}

void abort_job(int code) {
  int initialized = 0, finalized = 0;
  MPI_Initialized(&initialized);
  MPI_Finalized(&finalized);
  if (initialized && !finalized) MPI_Abort(MPI_COMM_WORLD, code);
}

#else  // no MPI in this build

bool distributed_available() { return false; }
std::string mpi_version() { return "MPI not built in (configure with MPI installed: Debian's libopenmpi-dev)"; }
void detail_dist::mark_failed() {}

std::shared_ptr<Communicator> world_communicator(Device /*device*/) {
  const LaunchInfo l = launch_info();
  RECUR_THROW(Unsupported, "distributed training is unavailable: this recur was built without MPI",
              l.size > 1 ? " (and this process was launched as rank " + std::to_string(l.rank) + " of " +
                               std::to_string(l.size) + ")"
                         : std::string(),
              "; install MPI (Debian: openmpi-bin libopenmpi-dev) and rebuild");
}

void finalize_distributed() {}
void abort_job(int /*code*/) {}

#endif

}  // namespace recur

#if !defined(RECUR_HAVE_NCCL)
namespace recur {
bool nccl_available() { return false; }
std::string nccl_version() {
  return "NCCL not built in (needs CUDA, NCCL and MPI at configure time)";
}
std::shared_ptr<Communicator> detail_dist::make_nccl_communicator(void* /*mpi_comm*/, Device device) {
  RECUR_THROW(Unsupported, "distributed training on ", device.str(),
              " needs NCCL, and this recur was built without it; train on the CPU (--device cpu) "
              "or rebuild with CUDA and NCCL");
}
}  // namespace recur
#endif
