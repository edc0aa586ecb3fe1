// Launchers of the persistent-RNN kernels (persistent_rnn.cu): a whole
// forward pass of a GRU (reset_after) or LSTM layer in one launch, W_hh kept
// in shared memory. They take the CPU twin's arguments (rnn_sequence.h:
// time-major, processing order, the input projection precomputed by the
// caller's GEMM) and a plan from plan_persistent() for the same H and B.
// Only the BlockLocal regime has a kernel; any other plan is an
// UnsupportedError. Private to recur: host/src/cuda calls these.
//
// NOT YET RUN ON A GPU: written and compiled without one (docs/persistent.md).
#pragma once

#include <cuda_runtime_api.h>

#include "recur/kernels/persistent_plan.h"
#include "recur/kernels/rnn_sequence.h"

namespace recur::kernels::cuda {

// Enqueues the pass on `stream`. args.hproj and args.h_work are not used
// (the kernel keeps them in shared memory); args.rec_mask may be set.
void gru_sequence_persistent(const GruSequenceArgs<float>& args, const PersistentPlan& plan,
                             cudaStream_t stream);
void lstm_sequence_persistent(const LstmSequenceArgs<float>& args, const PersistentPlan& plan,
                              cudaStream_t stream);

}  // namespace recur::kernels::cuda
