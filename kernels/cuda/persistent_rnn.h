// Launchers of the persistent-RNN kernels (persistent_rnn.cu): a whole
// forward pass of a GRU (reset_after) or LSTM layer in one launch, W_hh kept
// in shared memory. They take the CPU twin's arguments (rnn_sequence.h:
// time-major, processing order, the input projection precomputed by the
// caller's GEMM) and a plan from plan_persistent() for the same H and B.
// The BlockLocal and Grid regimes have kernels; a Cluster plan is an
// UnsupportedError. Private to recur: host/src/cuda calls these.
//
// NOT YET RUN ON A GPU: written and compiled without one (docs/persistent.md).
#pragma once

#include <cuda_runtime_api.h>

#include "recur/kernels/persistent_plan.h"
#include "recur/kernels/rnn_sequence.h"

#include <string>

namespace recur::kernels::cuda {

// Empty when a kernel exists for the plan and, for Grid, all its blocks can
// be resident at once on the current device (occupancy API, the real
// kernel's registers); else why not.
std::string persistent_plan_check(RnnCellKind cell, const PersistentPlan& plan);

// Enqueues the pass on `stream`; args.rec_mask may be set. args.h_work is
// not used. args.hproj ([B, G H]) is the Grid kernel's scratch, unused by
// BlockLocal (which keeps it in shared memory). A Grid plan whose blocks
// cannot all be resident (checked with the occupancy API) is an
// UnsupportedError, never a hang.
void gru_sequence_persistent(const GruSequenceArgs<float>& args, const PersistentPlan& plan,
                             cudaStream_t stream);
void lstm_sequence_persistent(const LstmSequenceArgs<float>& args, const PersistentPlan& plan,
                              cudaStream_t stream);

// The backward pass (backpropagation through the whole sequence) in one
// launch, BlockLocal plans only (plan_persistent() with query.backward):
// dh (and dc) in/out, the gate gradients of every step out, rec_mask applied
// to the recurrent product. The bias sums (db_x, db_h, db) and the workspaces
// of the CPU twin's arguments are not used: the caller reduces the gate
// gradients over T B rows, and runs the weight gradients as GEMMs.
void gru_sequence_backward_persistent(const GruSequenceBackArgs<float>& args, const PersistentPlan& plan,
                                      cudaStream_t stream);
void lstm_sequence_backward_persistent(const LstmSequenceBackArgs<float>& args, const PersistentPlan& plan,
                                       cudaStream_t stream);

// SimpleRNN and the reset-before GRU (Keras reset_after=False): block-local
// plans only (plan_persistent() with query.cell SimpleRNN, or GRU and
// query.reset_before), forward and backward, arguments as the CPU twin's
// (workspaces unused; the bias sums are the caller's).
void rnn_sequence_persistent(const RnnSequenceArgs<float>& args, const PersistentPlan& plan, cudaStream_t stream);
void rnn_sequence_backward_persistent(const RnnSequenceBackArgs<float>& args, const PersistentPlan& plan,
                                      cudaStream_t stream);
void gru_rb_sequence_persistent(const GruRbSequenceArgs<float>& args, const PersistentPlan& plan,
                                cudaStream_t stream);
void gru_rb_sequence_backward_persistent(const GruRbSequenceBackArgs<float>& args, const PersistentPlan& plan,
                                         cudaStream_t stream);

}  // namespace recur::kernels::cuda
