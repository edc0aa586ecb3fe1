// Data-parallel communication: the engines users already run, not a protocol
// of recur's own. A Communicator sums tensors across the ranks of one job:
//  - MPI (OpenMPI, MPICH) for CPU ranks: MPI_Iallreduce on host tensors;
//  - NCCL for GPU ranks: one communicator per job, bootstrapped over MPI
//    (ncclGetUniqueId on rank 0, MPI_Bcast), all-reduces on the device's stream.
// Both are optional at build time (CMake finds them; distributed_available()
// says whether this build has them). A job is launched by the user's launcher
// (`mpirun -np N recur ...`, srun); launch_info() reads rank and size from
// MPI's or the launcher's environment variables.
//
// Collectives never hang a job forever: every wait polls the non-blocking
// operation against a deadline (RECUR_DIST_TIMEOUT seconds, default 300) and
// throws DistributedError naming the rank, the operation and the timeout.
// The library never exits or aborts the job; a program that catches the error
// ends the job with abort_job() (the `recur` CLI does).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "recur/host/tensor.h"

namespace recur {

// Where this process sits in the job, from the environment alone (no MPI call):
// OMPI_COMM_WORLD_{RANK,SIZE,LOCAL_RANK,LOCAL_SIZE} (Open MPI),
// PMI_RANK/PMI_SIZE (MPICH, Intel MPI), PMIX_RANK, SLURM_PROCID/SLURM_NTASKS/
// SLURM_LOCALID (srun). size 1 when none is set.
struct LaunchInfo {
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
  std::string source;  // the variable rank came from, or "" (not launched by a launcher)
};
LaunchInfo launch_info();

// Whether this build can run distributed training (MPI found at build time),
// and with NCCL (CUDA and NCCL found).
bool distributed_available();
bool nccl_available();
// "Open MPI v4.1.4, ..." / "NCCL 2.21.5" / "not built in (...)": for `recur devices`.
std::string mpi_version();
std::string nccl_version();

// The collective timeout in seconds: RECUR_DIST_TIMEOUT (a positive number),
// else 300. A bad value is a ValueError naming the variable.
double collective_timeout_seconds();

// A started collective; wait() blocks until it completes or the timeout
// passes (DistributedError). progress() lets MPI advance it without blocking.
class PendingCollective {
 public:
  virtual ~PendingCollective() = default;
  virtual bool progress() = 0;  // true when complete
  virtual void wait() = 0;
};

class Communicator {
 public:
  virtual ~Communicator() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  virtual int local_rank() const = 0;
  virtual std::string name() const = 0;  // "mpi", "nccl"
  // Sums the contiguous float32/float64 tensor `t` over the ranks, in place,
  // started now and finished by the returned handle's wait(). Every rank must
  // start the same collectives (same sizes) in the same order.
  virtual std::unique_ptr<PendingCollective> all_reduce_sum_start(const Tensor& t) = 0;
  void all_reduce_sum(const Tensor& t) { all_reduce_sum_start(t)->wait(); }
  // Copies rank `root`'s `t` into every rank's `t`.
  virtual void broadcast(const Tensor& t, int root) = 0;
  // Sums host doubles over the ranks, in place (logs, counts).
  virtual void all_reduce_sum(std::vector<double>& values) = 0;
  double timeout_seconds() const { return timeout_; }
  void set_timeout_seconds(double seconds);

 protected:
  double timeout_ = 300;
};

// The job's communicator for tensors on `device`: MPI for the CPU, NCCL for a
// GPU. Initializes MPI on first use (MPI_Init_thread); the same object for
// every call with the same device kind. Throws UnsupportedError when this build
// has no MPI (or, for a GPU, no NCCL), saying distributed training is unavailable.
std::shared_ptr<Communicator> world_communicator(Device device);

// Finalizes MPI when recur initialized it and no collective failed (a program
// calls it once at its end; after a DistributedError, end with abort_job()).
void finalize_distributed();
// Ends every rank of the job (MPI_Abort) with `code`. For programs (the CLI),
// never called by the library. A no-op without MPI or outside a job.
void abort_job(int code);

}  // namespace recur
