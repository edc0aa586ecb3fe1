// The float32 row loops of rnn_rows.h, compiled once per instruction set
// where GCC (or Clang 14+) can clone functions for x86-64: AVX-512, AVX2 with
// FMA and the baseline, picked when the library loads. Contraction into FMAs
// is on for this file (CMakeLists.txt): the loops are vec_math.h's
// polynomials, a quarter faster with FMAs, and one rounding per a * b + c is
// at least as accurate as two. The baseline clone, without FMA, rounds twice,
// so its results can differ from the others' in the last bits.
#include "rnn_rows.h"

#include <vector>

#include "cpu_clones.h"

namespace recur::kernels::cpu {

namespace {
// One gate of a row: s[j] = act(((p[j] + q[j]) + u[j]) + v[j]) over units
// [j0, j1), act tanh or the sigmoid, the four terms in the caller's order (its
// cell's order in rnn_cells.h). The forward loops run each gate in its own
// loop and then the state update: one loop doing all of a unit's sigmoids and
// tanhs at once needs more vector registers than there are, and its spills
// made the LSTM's forward pass at H 256 about 1% slower. (Inlined into each
// clone of its callers, so built for their instruction set.)
template <bool tanh_gate>
__attribute__((always_inline)) inline void gate_loop(const float* p, const float* q, const float* u,
                                                     const float* v, float* s, std::int64_t j0,
                                                     std::int64_t j1) {
#pragma omp simd
  for (std::int64_t j = j0; j < j1; ++j) {
    const float pre = p[j] + q[j] + u[j] + v[j];
    s[j] = tanh_gate ? vtanh(pre) : vsigmoid(pre);
  }
}

// A thread's scratch row for the gates when the step keeps none.
float* gate_scratch(std::int64_t n) {
  thread_local std::vector<float> s;
  if (std::int64_t(s.size()) < n) s.resize(std::size_t(n));
  return s.data();
}
}  // namespace

RECUR_CPU_CLONES_FMA
void gru_rows_f32(const GruStepArgs<float>& a, std::int64_t b0, std::int64_t b1, std::int64_t j0,
                  std::int64_t j1) {
  const std::int64_t H = a.H, nj = j1 - j0;
  const float* bi = or_zeros(a.b_ih, 3 * H);
  const float* bh = or_zeros(a.b_hh, 3 * H);
  for (std::int64_t b = b0; b < b1; ++b) {
    float* h = a.h + b * H;
    const float* hprev = a.h_prev + b * H;
    if (!row_valid(a.mask, b)) {
      if (h != hprev) copy_row(h + j0, hprev + j0, nj);
      if (a.y) zero_row(a.y + b * row_stride(a.ld_y, H) + j0, nj);
      if (a.saved)
        for (int q = 0; q < 4; ++q) zero_row(a.saved + b * 4 * H + q * H + j0, nj);
      continue;
    }
    const float* xp = a.xproj + b * a.ld_x;
    const float* hp = a.hproj + b * a.ld_h;
    // r and z (sigmoids), then n and h: see gate_loop.
    float* s = a.saved ? a.saved + b * 4 * H : gate_scratch(4 * H);
    gate_loop<false>(xp, bi, hp, bh, s, j0, j1);
    gate_loop<false>(xp + H, bi + H, hp + H, bh + H, s + H, j0, j1);
#pragma omp simd
    for (std::int64_t j = j0; j < j1; ++j) {
      const float r = s[j], z = s[H + j];
      const float hn = hp[2 * H + j] + bh[2 * H + j];
      const float n = vtanh(xp[2 * H + j] + bi[2 * H + j] + r * hn);
      h[j] = (1.0f - z) * n + z * hprev[j];
      s[2 * H + j] = n;
      s[3 * H + j] = hn;
    }
    if (a.y) copy_row(a.y + b * row_stride(a.ld_y, H) + j0, h + j0, nj);
  }
}

RECUR_CPU_CLONES_FMA
void gru_back_rows_f32(const GruBackArgs<float>& a, std::int64_t b0, std::int64_t b1) {
  const std::int64_t H = a.H;
  for (std::int64_t b = b0; b < b1; ++b) {
    const std::int64_t e = b * H;
    const float* dn = or_zeros(a.dh_next ? a.dh_next + e : nullptr, H);
    float* dx = a.dgates_x + b * 3 * H;
    float* dhg = a.dgates_h + b * 3 * H;
    float* dprev = a.dh_prev + e;
    if (!row_valid(a.mask, b)) {
      zero_row(dx, 3 * H);
      zero_row(dhg, 3 * H);
      if (dprev != dn) copy_row(dprev, dn, H);
      continue;
    }
    const float* dy = or_zeros(a.dy ? a.dy + b * row_stride(a.ld_dy, H) : nullptr, H);
    const float* s = a.saved + b * 4 * H;
    const float* hprev = a.h_prev + e;
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) {
      const float dh = dn[j] + dy[j];
      const float r = s[j], z = s[H + j], n = s[2 * H + j], hn = s[3 * H + j];
      const float dan = dh * (1.0f - z) * (1.0f - n * n);
      const float dar = dan * hn * r * (1.0f - r);
      const float daz = dh * (hprev[j] - n) * z * (1.0f - z);
      dx[j] = dhg[j] = dar;
      dx[H + j] = dhg[H + j] = daz;
      dx[2 * H + j] = dan;
      dhg[2 * H + j] = dan * r;
      dprev[j] = dh * z;
    }
  }
}

RECUR_CPU_CLONES_FMA
void lstm_rows_f32(const LstmStepArgs<float>& a, std::int64_t b0, std::int64_t b1, std::int64_t j0,
                   std::int64_t j1) {
  const std::int64_t H = a.H, n = j1 - j0;
  const float* bi = or_zeros(a.b_ih, 4 * H);
  const float* bh = or_zeros(a.b_hh, 4 * H);
  float* sv = a.saved;
  for (std::int64_t b = b0; b < b1; ++b) {
    const std::int64_t e = b * H;
    float* h = a.h + e;
    float* c = a.c + e;
    const float* cprev = a.c_prev + e;
    if (!row_valid(a.mask, b)) {
      if (c != cprev) copy_row(c + j0, cprev + j0, n);
      if (h != a.h_prev + e) copy_row(h + j0, a.h_prev + e + j0, n);
      if (a.y) zero_row(a.y + b * row_stride(a.ld_y, H) + j0, n);
      if (sv)
        for (int q = 0; q < 4; ++q) zero_row(sv + b * 4 * H + q * H + j0, n);
      continue;
    }
    const float* xp = a.xproj + b * a.ld_x;
    const float* hp = a.hproj + b * a.ld_h;
    // The gates i, f, g, o one loop each, then c and h: see gate_loop.
    float* s = sv ? sv + b * 4 * H : gate_scratch(4 * H);
    for (int q = 0; q < 4; ++q) {
      const std::int64_t o = q * H;
      if (q == 2)
        gate_loop<true>(xp + o, hp + o, bi + o, bh + o, s + o, j0, j1);
      else
        gate_loop<false>(xp + o, hp + o, bi + o, bh + o, s + o, j0, j1);
    }
#pragma omp simd
    for (std::int64_t j = j0; j < j1; ++j) {
      const float cv = s[H + j] * cprev[j] + s[j] * s[2 * H + j];
      c[j] = cv;
      h[j] = s[3 * H + j] * vtanh(cv);
    }
    if (a.y) copy_row(a.y + b * row_stride(a.ld_y, H) + j0, h + j0, n);
  }
}

RECUR_CPU_CLONES_FMA
void lstm_back_rows_f32(const LstmBackArgs<float>& a, std::int64_t b0, std::int64_t b1) {
  const std::int64_t H = a.H;
  for (std::int64_t b = b0; b < b1; ++b) {
    const std::int64_t e = b * H;
    const float* dn = or_zeros(a.dh_next ? a.dh_next + e : nullptr, H);
    const float* dcn = or_zeros(a.dc_next ? a.dc_next + e : nullptr, H);
    float* dg = a.dgates + b * 4 * H;
    float* dhp = a.dh_prev + e;
    float* dcp = a.dc_prev + e;
    if (!row_valid(a.mask, b)) {
      zero_row(dg, 4 * H);
      if (dhp != dn) copy_row(dhp, dn, H);
      if (dcp != dcn) copy_row(dcp, dcn, H);
      continue;
    }
    const float* dy = or_zeros(a.dy ? a.dy + b * row_stride(a.ld_dy, H) : nullptr, H);
    const float* s = a.saved + b * 4 * H;
    const float* cprev = a.c_prev + e;
    const float* cc = a.c + e;
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) {
      const float dh = dn[j] + dy[j];
      const float i = s[j], f = s[H + j], g = s[2 * H + j], o = s[3 * H + j];
      const float tc = vtanh(cc[j]);
      const float dc = dcn[j] + dh * o * (1.0f - tc * tc);
      dg[j] = dc * g * i * (1.0f - i);
      dg[H + j] = dc * cprev[j] * f * (1.0f - f);
      dg[2 * H + j] = dc * i * (1.0f - g * g);
      dg[3 * H + j] = dh * tc * o * (1.0f - o);
      dcp[j] = dc * f;
      dhp[j] = 0.0f;
    }
  }
}

namespace {
template <RnnActivation act>
void rnn_rows_impl(const RnnStepArgs<float>& a, std::int64_t b0, std::int64_t b1, std::int64_t j0,
                   std::int64_t j1) {
  const std::int64_t H = a.H, n = j1 - j0;
  const float* bi = or_zeros(a.b_ih, H);
  const float* bh = or_zeros(a.b_hh, H);
  for (std::int64_t b = b0; b < b1; ++b) {
    const std::int64_t e = b * H;
    float* h = a.h + e;
    if (!row_valid(a.mask, b)) {
      if (h != a.h_prev + e) copy_row(h + j0, a.h_prev + e + j0, n);
      if (a.y) zero_row(a.y + b * row_stride(a.ld_y, H) + j0, n);
      continue;
    }
    const float* xp = a.xproj + b * a.ld_x;
    const float* hp = a.hproj + b * a.ld_h;
    // libm's tanhf, not vtanh: see the note at the top.
    for (std::int64_t j = j0; j < j1; ++j) {
      const float pre = xp[j] + hp[j] + bi[j] + bh[j];
      h[j] = act == RnnActivation::Tanh ? rtanh(pre) : relu(pre);
    }
    if (a.y) copy_row(a.y + b * row_stride(a.ld_y, H) + j0, h + j0, n);
  }
}

template <RnnActivation act>
void rnn_back_rows_impl(const RnnBackArgs<float>& a, std::int64_t b0, std::int64_t b1) {
  const std::int64_t H = a.H;
  for (std::int64_t b = b0; b < b1; ++b) {
    const std::int64_t e = b * H;
    const float* dn = or_zeros(a.dh_next ? a.dh_next + e : nullptr, H);
    float* dg = a.dgates + e;
    float* dhp = a.dh_prev + e;
    if (!row_valid(a.mask, b)) {
      zero_row(dg, H);
      if (dhp != dn) copy_row(dhp, dn, H);
      continue;
    }
    const float* dy = or_zeros(a.dy ? a.dy + b * row_stride(a.ld_dy, H) : nullptr, H);
    const float* hh = a.h + e;
#pragma omp simd
    for (std::int64_t j = 0; j < H; ++j) {
      const float dh = dn[j] + dy[j];
      const float h = hh[j];
      dg[j] = act == RnnActivation::Tanh ? dh * (1.0f - h * h) : (h > 0.0f ? dh : 0.0f);
      dhp[j] = 0.0f;
    }
  }
}
}  // namespace

void rnn_rows_f32(RnnActivation act, const RnnStepArgs<float>& a, std::int64_t b0, std::int64_t b1,
                  std::int64_t j0, std::int64_t j1) {
  if (act == RnnActivation::Tanh) rnn_rows_impl<RnnActivation::Tanh>(a, b0, b1, j0, j1);
  else rnn_rows_impl<RnnActivation::Relu>(a, b0, b1, j0, j1);
}

RECUR_CPU_CLONES_FMA
void rnn_back_rows_f32(RnnActivation act, const RnnBackArgs<float>& a, std::int64_t b0, std::int64_t b1) {
  if (act == RnnActivation::Tanh) rnn_back_rows_impl<RnnActivation::Tanh>(a, b0, b1);
  else rnn_back_rows_impl<RnnActivation::Relu>(a, b0, b1);
}

}  // namespace recur::kernels::cpu
