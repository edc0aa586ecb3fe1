// See lt_gemm.h. Not yet run on a GPU (written without one; its tests are the
// CUDA/BackendOps.Gemm* cases, labelled gpu).
#include "lt_gemm.h"

#include <cstdlib>
#include <cstring>
#include <utility>

#include "library_check.h"
#include "recur/common/log.h"

namespace recur::cuda_host {
namespace {

// How many of the heuristic's candidates (best first) are looked at for one
// without split-K.
constexpr int kCandidates = 16;
// Distinct GEMM shapes that get a cached plan; past that (a process feeding
// ever new shapes) further shapes run through cuBLAS rather than grow the cache.
constexpr std::size_t kMaxPlans = 4096;

// The largest power of two, up to 256 (cuBLASLt's default assumption), that
// divides the address: the heuristic must only offer kernels that can load
// from it (recur passes views: a slice of W_hh, one step of a sequence).
std::int64_t alignment(const void* p) {
  const auto address = reinterpret_cast<std::uintptr_t>(p);
  std::int64_t a = 256;
  while (a > 1 && address % std::uintptr_t(a) != 0) a /= 2;
  return a;
}

// Statuses that say "this candidate cannot run this GEMM", as opposed to a
// failure of the library (which throws).
bool candidate_refused(cublasStatus_t s) {
  return s == CUBLAS_STATUS_NOT_SUPPORTED || s == CUBLAS_STATUS_INVALID_VALUE ||
         s == CUBLAS_STATUS_ARCH_MISMATCH;
}

template <class T>
T algo_config(const cublasLtMatmulAlgo_t& algo, cublasLtMatmulAlgoConfigAttributes_t attribute) {
  T value{};
  std::size_t written = 0;
  RECUR_CUBLAS_CHECK(cublasLtMatmulAlgoConfigGetAttribute(&algo, attribute, &value, sizeof value, &written));
  return value;
}

std::string describe_algo(const cublasLtMatmulAlgo_t& algo) {
  return detail::concat("algo ", algo_config<std::int32_t>(algo, CUBLASLT_ALGO_CONFIG_ID), ", tile ",
                        algo_config<std::uint32_t>(algo, CUBLASLT_ALGO_CONFIG_TILE_ID), ", stages ",
                        algo_config<std::uint32_t>(algo, CUBLASLT_ALGO_CONFIG_STAGES_ID), ", split-K ",
                        algo_config<std::int32_t>(algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM));
}

}  // namespace

bool lt_gemm_eligible(const GemmCall& g) {
  // alpha 0 stays with cuBLAS, whose BLAS semantics (C = beta C, A and B not
  // read) recur has relied on; no recur caller passes it today.
  return g.batch == 1 && g.c.dtype() == DType::f32 && g.alpha != 0.0 && g.k >= 1 &&
         g.k <= kLtMaxK && g.m >= 1 && g.n >= 1 && g.m * g.n <= kLtMaxOutputs;
}

bool lt_gemm_enabled() {
  const char* v = std::getenv("RECUR_CUBLASLT");
  return !(v && std::strcmp(v, "0") == 0);
}

// The descriptors and the algorithm for one key; `usable` false: no algorithm
// without split-K exists, cuBLAS runs it (remembered so the search runs once).
struct LtGemm::Plan {
  cublasLtMatmulDesc_t op = nullptr;
  cublasLtMatrixLayout_t a = nullptr, b = nullptr, c = nullptr;  // column-major A, B; C is D
  cublasLtMatmulAlgo_t algo{};
  bool usable = false;

  Plan() = default;
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {  // statuses ignored: nothing to do about a failed destroy
    if (c) (void)cublasLtMatrixLayoutDestroy(c);
    if (b) (void)cublasLtMatrixLayoutDestroy(b);
    if (a) (void)cublasLtMatrixLayoutDestroy(a);
    if (op) (void)cublasLtMatmulDescDestroy(op);
  }
};

namespace {
struct Preference {
  cublasLtMatmulPreference_t p = nullptr;
  Preference() { RECUR_CUBLAS_CHECK(cublasLtMatmulPreferenceCreate(&p)); }
  ~Preference() { (void)cublasLtMatmulPreferenceDestroy(p); }
  Preference(const Preference&) = delete;
  Preference& operator=(const Preference&) = delete;
  template <class T>
  void set(cublasLtMatmulPreferenceAttributes_t attribute, T value) {
    RECUR_CUBLAS_CHECK(cublasLtMatmulPreferenceSetAttribute(p, attribute, &value, sizeof value));
  }
};
}  // namespace

LtGemm::LtGemm(std::string device) : device_(std::move(device)) {
  RECUR_CUBLAS_CHECK(cublasLtCreate(&handle_));
  const cudaError_t e = cudaMalloc(&workspace_, kWorkspaceBytes);
  if (e != cudaSuccess) {
    (void)cublasLtDestroy(handle_);
    handle_ = nullptr;
    workspace_ = nullptr;
    RECUR_CUDA_CHECK(e);
  }
}

LtGemm::~LtGemm() {  // the backend is never destroyed, so this runs only if its constructor throws
  plans_.clear();
  if (workspace_) (void)cudaFree(workspace_);
  if (handle_) (void)cublasLtDestroy(handle_);
}

std::unique_ptr<LtGemm::Plan> LtGemm::make_plan(const Key& key) const {
  const std::int64_t m = key[0], n = key[1], k = key[2], lda = key[3], ldb = key[4], ldc = key[5];
  const bool trans_a = key[6] != 0, trans_b = key[7] != 0, beta_zero = key[8] != 0;
  auto plan = std::make_unique<Plan>();
  Plan& p = *plan;
  // Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T (as in
  // the cuBLAS path): cuBLASLt's A is recur's b, its B is recur's a, and the
  // column-major dimensions are n x m; no data moves.
  const cublasOperation_t op_first = trans_b ? CUBLAS_OP_T : CUBLAS_OP_N;
  const cublasOperation_t op_second = trans_a ? CUBLAS_OP_T : CUBLAS_OP_N;
  RECUR_CUBLAS_CHECK(cublasLtMatmulDescCreate(&p.op, CUBLAS_COMPUTE_32F, CUDA_R_32F));
  const std::int32_t ta = op_first, tb = op_second, pointer_mode = CUBLASLT_POINTER_MODE_HOST;
  RECUR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSA, &ta, sizeof ta));
  RECUR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_TRANSB, &tb, sizeof tb));
  RECUR_CUBLAS_CHECK(cublasLtMatmulDescSetAttribute(p.op, CUBLASLT_MATMUL_DESC_POINTER_MODE,
                                                    &pointer_mode, sizeof pointer_mode));
  // Layouts describe the stored matrices (before the transposes).
  RECUR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.a, CUDA_R_32F, std::uint64_t(trans_b ? k : n),
                                                std::uint64_t(trans_b ? n : k), ldb));
  RECUR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.b, CUDA_R_32F, std::uint64_t(trans_a ? m : k),
                                                std::uint64_t(trans_a ? k : m), lda));
  RECUR_CUBLAS_CHECK(cublasLtMatrixLayoutCreate(&p.c, CUDA_R_32F, std::uint64_t(n), std::uint64_t(m), ldc));

  Preference pref;
  pref.set<std::uint64_t>(CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, kWorkspaceBytes);
  pref.set<std::uint32_t>(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, std::uint32_t(key[10]));  // recur's b
  pref.set<std::uint32_t>(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, std::uint32_t(key[9]));   // recur's a
  pref.set<std::uint32_t>(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, std::uint32_t(key[11]));
  pref.set<std::uint32_t>(CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, std::uint32_t(key[11]));

  cublasLtMatmulHeuristicResult_t results[kCandidates] = {};
  int count = 0;
  const cublasStatus_t heuristic = cublasLtMatmulAlgoGetHeuristic(
      handle_, p.op, p.a, p.b, p.c, p.c, pref.p, kCandidates, results, &count);
  if (heuristic == CUBLAS_STATUS_NOT_SUPPORTED)
    count = 0;  // no heuristic for this configuration: cuBLAS runs it
  else
    cuda_detail::check_cublas(heuristic, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);

  const std::string what = detail::concat(device_, " gemm m ", m, " n ", n, " k ", k, " trans_a ",
                                          trans_a, " trans_b ", trans_b, " beta ",
                                          beta_zero ? "0" : "!= 0", ": ");
  // First choice: the best candidate that already computes all of K in one kernel.
  for (int i = 0; i < count && !p.usable; ++i) {
    const cublasLtMatmulHeuristicResult_t& r = results[i];
    if (r.state != CUBLAS_STATUS_SUCCESS || r.workspaceSize > kWorkspaceBytes) continue;
    if (algo_config<std::int32_t>(r.algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM) > 1) continue;
    p.algo = r.algo;
    p.usable = true;
    RECUR_LOG_DEBUG(what, "cuBLASLt ", describe_algo(p.algo), " (heuristic's candidate ", i + 1,
                    " of ", count, ", workspace ", r.workspaceSize, " bytes, waves ", r.wavesCount, ")");
  }
  // Else the best candidate made to run without split-K, if cuBLASLt accepts that.
  for (int i = 0; i < count && !p.usable; ++i) {
    if (results[i].state != CUBLAS_STATUS_SUCCESS) continue;
    cublasLtMatmulAlgo_t algo = results[i].algo;
    // True: done; false: this candidate refuses; any other failure throws.
    auto accepted = [](cublasStatus_t s, const char* call) {
      if (candidate_refused(s)) return false;
      cuda_detail::check_cublas(s, call, __FILE__, __LINE__);
      return true;
    };
    const std::int32_t one = 1;
    const std::uint32_t none = CUBLASLT_REDUCTION_SCHEME_NONE;
    cublasLtMatmulHeuristicResult_t check{};
    if (!accepted(cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_SPLITK_NUM, &one,
                                                       sizeof one),
                  "cublasLtMatmulAlgoConfigSetAttribute(CUBLASLT_ALGO_CONFIG_SPLITK_NUM)") ||
        !accepted(cublasLtMatmulAlgoConfigSetAttribute(&algo, CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME,
                                                       &none, sizeof none),
                  "cublasLtMatmulAlgoConfigSetAttribute(CUBLASLT_ALGO_CONFIG_REDUCTION_SCHEME)") ||
        !accepted(cublasLtMatmulAlgoCheck(handle_, p.op, p.a, p.b, p.c, p.c, &algo, &check),
                  "cublasLtMatmulAlgoCheck"))
      continue;
    if (check.workspaceSize > kWorkspaceBytes) continue;
    p.algo = algo;
    p.usable = true;
    RECUR_LOG_DEBUG(what, "cuBLASLt ", describe_algo(p.algo), " (heuristic's candidate ", i + 1,
                    " of ", count, " with split-K set to 1, workspace ", check.workspaceSize,
                    " bytes, waves ", check.wavesCount, ")");
  }
  if (!p.usable)
    RECUR_LOG_DEBUG(what, "cuBLASLt has no algorithm without split-K among ", count,
                    " candidates; cublasSgemmStridedBatched runs it (it may split K)");
  return plan;
}

bool LtGemm::run(const GemmCall& g, cudaStream_t stream) {
  if (!lt_gemm_eligible(g) || !lt_gemm_enabled()) return false;
  const Key key{g.m,
                g.n,
                g.k,
                g.lda,
                g.ldb,
                g.ldc,
                g.trans_a,
                g.trans_b,
                g.beta == 0.0,
                alignment(g.a.raw_data()),
                alignment(g.b.raw_data()),
                alignment(g.c.raw_data())};
  const Plan* plan = nullptr;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = plans_.find(key);
    if (it == plans_.end()) {
      if (plans_.size() >= kMaxPlans) {
        if (!full_logged_)
          RECUR_LOG_DEBUG(device_, " gemm: ", kMaxPlans, " cuBLASLt plans cached; further shapes run "
                          "through cublasSgemmStridedBatched");
        full_logged_ = true;
        return false;
      }
      it = plans_.emplace(key, make_plan(key)).first;
    }
    plan = it->second.get();
  }
  if (!plan->usable) return false;
  const float alpha = float(g.alpha), beta = float(g.beta);
  float* c = g.c.data<float>();
  RECUR_CUBLAS_CHECK(cublasLtMatmul(handle_, plan->op, &alpha, g.b.data<float>(), plan->a,
                                    g.a.data<float>(), plan->b, &beta, c, plan->c, c, plan->c,
                                    &plan->algo, workspace_, kWorkspaceBytes, stream));
  return true;
}

}  // namespace recur::cuda_host
