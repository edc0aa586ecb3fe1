// Optimizer updates and gradient clipping, written once for the CPU twin
// (kernels/cpu/optim.cpp) and the CUDA kernel (kernels/cuda/optim.cu). One
// call updates every parameter of a model: param, grad and each slot are flat
// buffers of n elements (see engine/parameters.h), so a step is one fused pass.
//
// Keras 3's formulas (keras/optimizers/{sgd,rmsprop,adam}.py and
// base_optimizer.py), in the order Keras applies them in one step:
//   1. clipping of g (at most one kind, as Keras allows):
//        global norm:  g *= clipnorm / max(norm, clipnorm), norm = sqrt(sum of g^2 over
//                      the whole buffer); NaN when norm is not finite (as Keras)
//        value:        g = clamp(g, -clipvalue, clipvalue)
//   2. decoupled weight decay (AdamW; any kind when weight_decay > 0):
//        p -= p * weight_decay * lr
//   3. the update, with lr the step's learning rate and t = iterations + 1:
//   SGD       momentum 0:  p -= lr g
//             else:        m = momentum m - lr g;  p += m                (slot0 = m)
//             Nesterov:    m = momentum m - lr g;  p += momentum m - lr g
//   RMSprop   v = rho v + (1 - rho) g^2                                  (slot0 = v)
//             centered:    a = rho a + (1 - rho) g; den = v - a^2 + eps  (slot2 = a)
//             else:        den = v + eps
//             inc = lr g / sqrt(den)
//             momentum > 0: mo = momentum mo + inc; p -= mo               (slot1 = mo)
//             else:         p -= inc
//   Adam      m += (g - m)(1 - beta1);  v += (g^2 - v)(1 - beta2)        (slot0 = m, slot1 = v)
//             alpha = lr sqrt(1 - beta2^t) / (1 - beta1^t)   (computed on the host per step)
//             p -= m alpha / (sqrt(v) + eps)     (Keras's "epsilon hat": eps not bias-corrected)
#pragma once

#include <cstdint>
#include <limits>

#include "recur/kernels/math.h"

namespace recur {

enum class OptimizerKind : std::uint8_t { SGD, RMSprop, Adam };

namespace kernels {

// Per-step values: host scalars, already cast to T by the caller.
template <class T>
struct OptimizerArgs {
  std::int64_t n = 0;
  T* param = nullptr;
  const T* grad = nullptr;
  T* slot0 = nullptr;  // see the table above; null where a kind has none
  T* slot1 = nullptr;
  T* slot2 = nullptr;
  T lr = T(0.001);
  T momentum = T(0);  // SGD, RMSprop
  bool nesterov = false;
  T rho = T(0.9);  // RMSprop
  bool centered = false;
  T beta1 = T(0.9), beta2 = T(0.999);  // Adam
  T alpha = T(0);                      // Adam: lr sqrt(1 - beta2^t) / (1 - beta1^t)
  T epsilon = T(1e-7);
  T weight_decay = T(0);  // 0: none
  // Clipping: grad_sq_sum points at the sum of g^2 over the buffer (device
  // memory on CUDA), set for clipping by global norm; clipvalue > 0 clips values.
  const double* grad_sq_sum = nullptr;
  T clipnorm = T(0);
  T clipvalue = T(0);
};

// The factor clipping by global norm multiplies every gradient by.
template <class T>
RECUR_HD T global_norm_scale(double sq_sum, T clipnorm) {
  const double norm = ::sqrt(sq_sum);
  if (!(norm <= std::numeric_limits<double>::max())) return std::numeric_limits<T>::quiet_NaN();
  return T(double(clipnorm) / (norm > double(clipnorm) ? norm : double(clipnorm)));
}

template <class T>
RECUR_HD T clip_gradient(T g, T norm_scale, T clipvalue) {
  g *= norm_scale;
  if (clipvalue > T(0)) g = g < -clipvalue ? -clipvalue : (g > clipvalue ? clipvalue : g);
  return g;
}

// Element i of one step. norm_scale: global_norm_scale(...) or 1.
template <OptimizerKind k, class T>
RECUR_HD void optimizer_update_at(const OptimizerArgs<T>& a, std::int64_t i, T norm_scale) {
  const T g = clip_gradient(a.grad[i], norm_scale, a.clipvalue);
  T p = a.param[i];
  if (a.weight_decay > T(0)) p -= p * a.weight_decay * a.lr;
  if constexpr (k == OptimizerKind::SGD) {
    if (a.momentum != T(0)) {
      const T m = a.momentum * a.slot0[i] - a.lr * g;
      a.slot0[i] = m;
      p += a.nesterov ? a.momentum * m - a.lr * g : m;
    } else {
      p -= a.lr * g;
    }
  } else if constexpr (k == OptimizerKind::RMSprop) {
    const T v = a.rho * a.slot0[i] + (T(1) - a.rho) * g * g;
    a.slot0[i] = v;
    T den;
    if (a.centered) {
      const T avg = a.rho * a.slot2[i] + (T(1) - a.rho) * g;
      a.slot2[i] = avg;
      den = v - avg * avg + a.epsilon;
    } else {
      den = v + a.epsilon;
    }
    const T inc = a.lr * g / square_root(den);
    if (a.momentum > T(0)) {
      const T mo = a.momentum * a.slot1[i] + inc;
      a.slot1[i] = mo;
      p -= mo;
    } else {
      p -= inc;
    }
  } else {
    static_assert(k == OptimizerKind::Adam, "unknown optimizer kind");
    const T m = a.slot0[i] + (g - a.slot0[i]) * (T(1) - a.beta1);
    const T v = a.slot1[i] + (g * g - a.slot1[i]) * (T(1) - a.beta2);
    a.slot0[i] = m;
    a.slot1[i] = v;
    p -= m * a.alpha / (square_root(v) + a.epsilon);
  }
  a.param[i] = p;
}

}  // namespace kernels
}  // namespace recur
