// Small float32 GEMMs through cuBLASLt with an algorithm that does not split K
// (issue 13, item 5). Part of the CUDA backend (host/src/cuda/cuda_backend.cpp),
// private to it.
//
// Why: the standard per-step path of a recurrent layer runs, every time step,
// h [B, H] x W_hh^T [H, G H] forward and dgates [B, G H] x W_hh [G H, H]
// backward. For these small products cublasSgemm picks split-K kernels on an
// H100 (measured 2026-12-05), which costs a second launch per product
// (splitKreduce_kernel): three launches per step instead of two. cuBLASLt lets
// us ask for its heuristic's candidates and take the best one that computes
// all of K in one kernel.
//
// Which GEMMs ("small", lt_gemm_eligible): float32, not batched (batch 1),
// alpha != 0, K <= 1024 and M * N <= 2^20 outputs. For the per-step
// recurrent products that is: forward (K = H) every H <= 1024 with
// B * G H <= 2^20 (e.g. B 256 with an LSTM of H 1024); backward (K = G H)
// LSTM H <= 256, GRU H <= 341, SimpleRNN H <= 1024: every shape of issue 13's
// targets (H <= 128, B <= 256) and the Jena models. It leaves out the two
// kinds where splitting K is what makes cuBLAS fast or costs nothing: the
// weight-gradient GEMMs over all steps (K = T * B, tens of thousands, onto a
// small [G H, H] output: without split-K a handful of blocks would walk all
// of K), and large outputs, which have tiles enough for every SM so cuBLAS
// does not split them anyway. Everything else keeps cublasSgemmStridedBatched.
// The bounds are a judgement, not a measurement: between K 1024 and 4096 with
// few output tiles, one launch walking K may or may not beat two launches;
// only a GPU can say (issue 13).
//
// Numerics: CUBLAS_COMPUTE_32F (pure FP32, never TF32), scale type float,
// alpha/beta on the host: results match the CPU to float rounding, as the
// cuBLAS path does.
//
// Cost: the heuristic query and the descriptors are made once per distinct
// (M, N, K, transposes, leading dimensions, beta == 0, pointer alignments) and
// cached; a cached call is a map lookup and cublasLtMatmul. The workspace is
// one fixed device buffer per backend, allocated up front (no allocation in
// the GEMM path, which a CUDA graph capture needs).
//
// RECUR_CUBLASLT=0 (read at every call, so a test or a process can switch)
// sends every GEMM to cublasSgemmStridedBatched as before.
#pragma once

#include <cublasLt.h>
#include <cuda_runtime_api.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "recur/host/backend.h"

namespace recur::cuda_host {

// The rule above: float32, batch 1, alpha != 0, K <= kLtMaxK, M * N <= kLtMaxOutputs.
inline constexpr std::int64_t kLtMaxK = 1024;
inline constexpr std::int64_t kLtMaxOutputs = std::int64_t(1) << 20;
bool lt_gemm_eligible(const GemmCall& g);

// False when RECUR_CUBLASLT is "0".
bool lt_gemm_enabled();

class LtGemm {
 public:
  // Runs with the backend's device current: creates the cuBLASLt handle and
  // allocates the workspace there. `device` names it in log lines.
  explicit LtGemm(std::string device);
  ~LtGemm();
  LtGemm(const LtGemm&) = delete;
  LtGemm& operator=(const LtGemm&) = delete;

  // Runs g (row-major, as GemmCall describes it) on `stream` when it is
  // enabled, eligible and cuBLASLt has an algorithm without split-K for it;
  // returns false, having done nothing, otherwise (the caller runs cuBLAS).
  // The device must be current.
  bool run(const GemmCall& g, cudaStream_t stream);

  // The fixed workspace (the same buffer for every call).
  static constexpr std::size_t kWorkspaceBytes = std::size_t(4) << 20;

 private:
  struct Plan;
  // m, n, k, lda, ldb, ldc, trans_a, trans_b, beta == 0, alignment of a, b, c.
  using Key = std::array<std::int64_t, 12>;
  std::unique_ptr<Plan> make_plan(const Key& key) const;

  std::string device_;
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::mutex mutex_;
  std::map<Key, std::unique_ptr<Plan>> plans_;  // never erased: Plan pointers stay valid
  bool full_logged_ = false;
};

}  // namespace recur::cuda_host
