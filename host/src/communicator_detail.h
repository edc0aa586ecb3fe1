// What communicator.cpp (MPI) and cuda/nccl_communicator.cpp (NCCL) share.
// Private to host/.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "recur/host/communicator.h"

namespace recur::detail_dist {

// Calls done() until it returns true; past `timeout` seconds calls on_timeout
// (may be empty) and throws DistributedError naming `rank` and `what`.
void poll_until(const std::function<bool()>& done, double timeout, int rank, const std::string& what,
                const std::function<void()>& on_timeout);

// A collective failed or timed out: finalize_distributed() will not wait on the job.
void mark_failed();

// The NCCL communicator over all ranks of *mpi_comm (an MPI_Comm*, kept out of
// this header), for `device` (cuda:N). UnsupportedError when this build has no NCCL.
std::shared_ptr<Communicator> make_nccl_communicator(void* mpi_comm, Device device);

}  // namespace recur::detail_dist
