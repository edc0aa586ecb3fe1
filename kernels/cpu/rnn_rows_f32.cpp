// The float32 row loops of rnn_rows.h, compiled once per instruction set
// where GCC (or Clang 14+) can clone functions for x86-64: AVX-512, AVX2 with
// FMA and the baseline, picked when the library loads. Contraction into FMAs
// is on for this file (CMakeLists.txt): the loops are vec_math.h's
// polynomials, a quarter faster with FMAs, and one rounding per a * b + c is
// at least as accurate as two. The baseline clone, without FMA, rounds twice,
// so its results can differ from the others' in the last bits.
#include "rnn_rows.h"

#include "cpu_clones.h"

namespace recur::kernels::cpu {

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
      if (a.y) zero_row(a.y + b * H + j0, nj);
      if (a.saved)
        for (int q = 0; q < 4; ++q) zero_row(a.saved + b * 4 * H + q * H + j0, nj);
      continue;
    }
    const float* xp = a.xproj + b * a.ld_x;
    const float* hp = a.hproj + b * a.ld_h;
    if (a.saved) {
      float* s = a.saved + b * 4 * H;
#pragma omp simd
      for (std::int64_t j = j0; j < j1; ++j) {
        const float r = vsigmoid(xp[j] + bi[j] + hp[j] + bh[j]);
        const float z = vsigmoid(xp[H + j] + bi[H + j] + hp[H + j] + bh[H + j]);
        const float hn = hp[2 * H + j] + bh[2 * H + j];
        const float n = vtanh(xp[2 * H + j] + bi[2 * H + j] + r * hn);
        h[j] = (1.0f - z) * n + z * hprev[j];
        s[j] = r;
        s[H + j] = z;
        s[2 * H + j] = n;
        s[3 * H + j] = hn;
      }
    } else {
#pragma omp simd
      for (std::int64_t j = j0; j < j1; ++j) {
        const float r = vsigmoid(xp[j] + bi[j] + hp[j] + bh[j]);
        const float z = vsigmoid(xp[H + j] + bi[H + j] + hp[H + j] + bh[H + j]);
        const float hn = hp[2 * H + j] + bh[2 * H + j];
        const float n = vtanh(xp[2 * H + j] + bi[2 * H + j] + r * hn);
        h[j] = (1.0f - z) * n + z * hprev[j];
      }
    }
    if (a.y) copy_row(a.y + b * H + j0, h + j0, nj);
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
    const float* dy = or_zeros(a.dy ? a.dy + e : nullptr, H);
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
      if (a.y) zero_row(a.y + e + j0, n);
      if (sv)
        for (int q = 0; q < 4; ++q) zero_row(sv + b * 4 * H + q * H + j0, n);
      continue;
    }
    const float* xp = a.xproj + b * a.ld_x;
    const float* hp = a.hproj + b * a.ld_h;
    if (sv) {
      float* s = sv + b * 4 * H;
#pragma omp simd
      for (std::int64_t j = j0; j < j1; ++j) {
        const float i = vsigmoid(xp[j] + hp[j] + bi[j] + bh[j]);
        const float f = vsigmoid(xp[H + j] + hp[H + j] + bi[H + j] + bh[H + j]);
        const float g = vtanh(xp[2 * H + j] + hp[2 * H + j] + bi[2 * H + j] + bh[2 * H + j]);
        const float o = vsigmoid(xp[3 * H + j] + hp[3 * H + j] + bi[3 * H + j] + bh[3 * H + j]);
        const float cv = f * cprev[j] + i * g;
        c[j] = cv;
        h[j] = o * vtanh(cv);
        s[j] = i;
        s[H + j] = f;
        s[2 * H + j] = g;
        s[3 * H + j] = o;
      }
    } else {
#pragma omp simd
      for (std::int64_t j = j0; j < j1; ++j) {
        const float i = vsigmoid(xp[j] + hp[j] + bi[j] + bh[j]);
        const float f = vsigmoid(xp[H + j] + hp[H + j] + bi[H + j] + bh[H + j]);
        const float g = vtanh(xp[2 * H + j] + hp[2 * H + j] + bi[2 * H + j] + bh[2 * H + j]);
        const float o = vsigmoid(xp[3 * H + j] + hp[3 * H + j] + bi[3 * H + j] + bh[3 * H + j]);
        const float cv = f * cprev[j] + i * g;
        c[j] = cv;
        h[j] = o * vtanh(cv);
      }
    }
    if (a.y) copy_row(a.y + e + j0, h + j0, n);
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
    const float* dy = or_zeros(a.dy ? a.dy + e : nullptr, H);
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
      if (a.y) zero_row(a.y + e + j0, n);
      continue;
    }
    const float* xp = a.xproj + b * a.ld_x;
    const float* hp = a.hproj + b * a.ld_h;
    // libm's tanhf, not vtanh: see the note at the top.
    for (std::int64_t j = j0; j < j1; ++j) {
      const float pre = xp[j] + hp[j] + bi[j] + bh[j];
      h[j] = act == RnnActivation::Tanh ? rtanh(pre) : relu(pre);
    }
    if (a.y) copy_row(a.y + e + j0, h + j0, n);
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
    const float* dy = or_zeros(a.dy ? a.dy + e : nullptr, H);
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
