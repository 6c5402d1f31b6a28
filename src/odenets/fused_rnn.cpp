// The cells' elementwise arithmetic of `odenets.fused_rnn`, one pass over memory per evaluation (issue 12).
//
// Written op by op in torch, an LSTM evaluation is about fifteen elementwise kernels forward and twenty
// backward, each reading and writing whole (batch, gates) tensors; here each is one loop over the batch
// rows that reads the pre-activations once and writes what the scan keeps. The matrix products stay in
// torch (`fused_rnn.py`). Same formulas as the Python kernels there, which the tests compare with.
//
// float: exp by range reduction and a degree-6 polynomial (relative error below 2e-7), branch-free so
// the compiler vectorises the loops, compiled for AVX2+FMA and for plain x86-64 (the loader picks one
// at run time); double: std::exp, so float64 tests compare at round-off.
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <cmath>
#include <cstdint>
#include <bit>

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ODENETS_CLONES __attribute__((target_clones("arch=haswell", "default")))
#else
#define ODENETS_CLONES
#endif
#define ODENETS_INLINE inline __attribute__((always_inline))  // into each clone, so its loop vectorises

namespace {

ODENETS_INLINE float exp_approx(float x) {
  x = x < -87.0f ? -87.0f : x;  // comparisons, not fmin/fmax: a NaN stays NaN
  x = x > 88.0f ? 88.0f : x;
  const float t = x * 1.44269504088896341f;
  const int32_t n = static_cast<int32_t>(t + (t < 0.0f ? -0.5f : 0.5f));  // round(x / ln 2)
  const float nf = static_cast<float>(n);
  const float r = (x - nf * 0.693359375f) + nf * 2.12194440e-4f;  // x - n ln 2, ln 2 in two parts
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  return p * std::bit_cast<float>((n + 127) << 23);  // times 2^n
}

ODENETS_INLINE float exp_(float x) { return exp_approx(x); }
ODENETS_INLINE double exp_(double x) { return std::exp(x); }

template <typename T>
ODENETS_INLINE T sigmoid(T x) {
  return T(1) / (T(1) + exp_(-x));
}

template <typename T>
ODENETS_INLINE T tanh_(T x) {
  return T(1) - T(2) / (T(1) + exp_(T(2) * x));
}

// LSTM, state z = [h; c] (B, 2n), gates (B, 4n) in torch's order i, f, g, o.
// In: gates holds h W^T, u + bias the input half; out: gates holds i, f, g, o, k = [h' - h; c' - c],
// tanh_c = tanh(c').
template <typename T>
ODENETS_CLONES void lstm_forward_rows(int64_t b0, int64_t b1, int64_t n, T* gates, const T* u, const T* bias,
                                      const T* z, T* k, T* tanh_c) {
  const T* __restrict bi = bias;
  const T* __restrict bf = bi + n;
  const T* __restrict bg = bf + n;
  const T* __restrict bo = bg + n;
  for (int64_t r = b0; r < b1; ++r) {  // one pointer per block of a row: plain a[j] accesses vectorise
    T* __restrict ai = gates + r * 4 * n;
    T* __restrict af = ai + n;
    T* __restrict ag = af + n;
    T* __restrict ao = ag + n;
    const T* __restrict ui = u + r * 4 * n;
    const T* __restrict uf = ui + n;
    const T* __restrict ug = uf + n;
    const T* __restrict uo = ug + n;
    const T* __restrict h = z + r * 2 * n;
    const T* __restrict c = h + n;
    T* __restrict kh = k + r * 2 * n;
    T* __restrict kc = kh + n;
    T* __restrict tc = tanh_c + r * n;
#pragma GCC ivdep
    for (int64_t j = 0; j < n; ++j) {
      const T i = sigmoid(ai[j] + ui[j] + bi[j]), f = sigmoid(af[j] + uf[j] + bf[j]),
              g = tanh_(ag[j] + ug[j] + bg[j]), o = sigmoid(ao[j] + uo[j] + bo[j]);
      const T c_new = f * c[j] + i * g;
      const T t = tanh_(c_new);
      ai[j] = i, af[j] = f, ag[j] = g, ao[j] = o;
      tc[j] = t;
      kh[j] = o * t - h[j];
      kc[j] = c_new - c[j];
    }
  }
}

// Gradients of the gate pre-activations (d_pre, B x 4n) and of z except through the gates (dz, B x 2n).
template <typename T>
ODENETS_CLONES void lstm_backward_rows(int64_t b0, int64_t b1, int64_t n, const T* dk, const T* z, const T* act,
                                       const T* tanh_c, T* d_pre, T* dz) {
  for (int64_t r = b0; r < b1; ++r) {
    const T* __restrict dh = dk + r * 2 * n;
    const T* __restrict dc = dh + n;
    const T* __restrict c = z + r * 2 * n + n;
    const T* __restrict ai = act + r * 4 * n;
    const T* __restrict af = ai + n;
    const T* __restrict ag = af + n;
    const T* __restrict ao = ag + n;
    const T* __restrict tc = tanh_c + r * n;
    T* __restrict di = d_pre + r * 4 * n;
    T* __restrict df = di + n;
    T* __restrict dg = df + n;
    T* __restrict d_o = dg + n;
    T* __restrict dzh = dz + r * 2 * n;
    T* __restrict dzc = dzh + n;
#pragma GCC ivdep
    for (int64_t j = 0; j < n; ++j) {
      const T i = ai[j], f = af[j], g = ag[j], o = ao[j], t = tc[j];
      const T dc_new = dc[j] + dh[j] * o * (T(1) - t * t);
      di[j] = dc_new * g * i * (T(1) - i);
      df[j] = dc_new * c[j] * f * (T(1) - f);
      dg[j] = dc_new * i * (T(1) - g * g);
      d_o[j] = dh[j] * t * o * (T(1) - o);
      dzh[j] = -dh[j];
      dzc[j] = dc_new * f - dc[j];
    }
  }
}

// GRU, hh = h W^T (B, 3m) and u + bias (B, 3m) in torch's order r, z, n; b_hn inside r * (.).
// Out: saved = [h W_n^T + b_n, r, z, n] (B, 4m) and k = (1 - z)(n - h).
template <typename T>
ODENETS_CLONES void gru_forward_rows(int64_t b0, int64_t b1, int64_t m, const T* hh, const T* u, const T* bias,
                                     const T* h, const T* bias_n, T* saved, T* k) {
  const T* __restrict br = bias;
  const T* __restrict bz = br + m;
  const T* __restrict bn = bz + m;
  for (int64_t q = b0; q < b1; ++q) {
    const T* __restrict xr = hh + q * 3 * m;
    const T* __restrict xz = xr + m;
    const T* __restrict xn = xz + m;
    const T* __restrict ur = u + q * 3 * m;
    const T* __restrict uz = ur + m;
    const T* __restrict un = uz + m;
    const T* __restrict hq = h + q * m;
    T* __restrict s_hn = saved + q * 4 * m;
    T* __restrict s_r = s_hn + m;
    T* __restrict s_z = s_r + m;
    T* __restrict s_n = s_z + m;
    T* __restrict kq = k + q * m;
#pragma GCC ivdep
    for (int64_t j = 0; j < m; ++j) {
      const T hn = xn[j] + bias_n[j];
      const T r = sigmoid(ur[j] + br[j] + xr[j]), zz = sigmoid(uz[j] + bz[j] + xz[j]);
      const T cand = tanh_(un[j] + bn[j] + r * hn);
      s_hn[j] = hn, s_r[j] = r, s_z[j] = zz, s_n[j] = cand;
      kq[j] = (T(1) - zz) * (cand - hq[j]);
    }
  }
}

// Gradients of hh (d_pre), of u (d_u), and of h except through hh (dh).
template <typename T>
ODENETS_CLONES void gru_backward_rows(int64_t b0, int64_t b1, int64_t m, const T* dk, const T* h, const T* saved,
                                      T* d_pre, T* d_u, T* dh) {
  for (int64_t q = b0; q < b1; ++q) {
    const T* __restrict d = dk + q * m;
    const T* __restrict hq = h + q * m;
    const T* __restrict s_hn = saved + q * 4 * m;
    const T* __restrict s_r = s_hn + m;
    const T* __restrict s_z = s_r + m;
    const T* __restrict s_n = s_z + m;
    T* __restrict pr = d_pre + q * 3 * m;
    T* __restrict pz = pr + m;
    T* __restrict pn = pz + m;
    T* __restrict ur = d_u + q * 3 * m;
    T* __restrict uz = ur + m;
    T* __restrict un = uz + m;
    T* __restrict dhq = dh + q * m;
#pragma GCC ivdep
    for (int64_t j = 0; j < m; ++j) {
      const T hn = s_hn[j], r = s_r[j], zz = s_z[j], cand = s_n[j];
      const T d_cand = d[j] * (T(1) - zz) * (T(1) - cand * cand);
      const T d_r = d_cand * hn * r * (T(1) - r);
      const T d_z = d[j] * (hq[j] - cand) * zz * (T(1) - zz);
      pr[j] = ur[j] = d_r;
      pz[j] = uz[j] = d_z;
      pn[j] = d_cand * r;
      un[j] = d_cand;
      dhq[j] = d[j] * (zz - T(1));
    }
  }
}

// body(T{}, b0, b1) on rows [b0, b1) of the batch, in parallel over torch's intra-op threads, for the
// tensors' dtype T (float or double), once they are checked to be contiguous CPU tensors of that dtype.
template <typename Body>
void over_rows(std::initializer_list<at::Tensor> tensors, int64_t width, const Body& body) {
  const at::Tensor& first = *tensors.begin();
  for (const auto& t : tensors) {
    TORCH_CHECK(t.device().is_cpu() && t.is_contiguous() && t.scalar_type() == first.scalar_type(),
                "odenets fused_rnn: expected contiguous CPU tensors of one dtype");
  }
  AT_DISPATCH_FLOATING_TYPES(first.scalar_type(), "odenets_fused_rnn", [&] {
    at::parallel_for(0, first.size(0), std::max<int64_t>(1, 16384 / width),
                     [&](int64_t b0, int64_t b1) { body(scalar_t{}, b0, b1); });
  });
}

void lstm_forward(at::Tensor gates, const at::Tensor& u, const at::Tensor& bias, const at::Tensor& z, at::Tensor k,
                  at::Tensor tanh_c) {
  const int64_t n = tanh_c.size(1);
  over_rows({gates, u, bias, z, k, tanh_c}, 4 * n, [&](auto zero, int64_t b0, int64_t b1) {
    using T = decltype(zero);
    lstm_forward_rows<T>(b0, b1, n, gates.data_ptr<T>(), u.const_data_ptr<T>(), bias.const_data_ptr<T>(),
                         z.const_data_ptr<T>(), k.data_ptr<T>(), tanh_c.data_ptr<T>());
  });
}

void lstm_backward(const at::Tensor& dk, const at::Tensor& z, const at::Tensor& act, const at::Tensor& tanh_c,
                   at::Tensor d_pre, at::Tensor dz) {
  const int64_t n = tanh_c.size(1);
  over_rows({dk, z, act, tanh_c, d_pre, dz}, 4 * n, [&](auto zero, int64_t b0, int64_t b1) {
    using T = decltype(zero);
    lstm_backward_rows<T>(b0, b1, n, dk.const_data_ptr<T>(), z.const_data_ptr<T>(), act.const_data_ptr<T>(),
                          tanh_c.const_data_ptr<T>(), d_pre.data_ptr<T>(), dz.data_ptr<T>());
  });
}

void gru_forward(const at::Tensor& hh, const at::Tensor& u, const at::Tensor& bias, const at::Tensor& h,
                 const at::Tensor& bias_n, at::Tensor saved, at::Tensor k) {
  const int64_t m = h.size(1);
  over_rows({hh, u, bias, h, bias_n, saved, k}, 4 * m, [&](auto zero, int64_t b0, int64_t b1) {
    using T = decltype(zero);
    gru_forward_rows<T>(b0, b1, m, hh.const_data_ptr<T>(), u.const_data_ptr<T>(), bias.const_data_ptr<T>(),
                        h.const_data_ptr<T>(), bias_n.const_data_ptr<T>(), saved.data_ptr<T>(), k.data_ptr<T>());
  });
}

void gru_backward(const at::Tensor& dk, const at::Tensor& h, const at::Tensor& saved, at::Tensor d_pre,
                  at::Tensor d_u, at::Tensor dh) {
  const int64_t m = h.size(1);
  over_rows({dk, h, saved, d_pre, d_u, dh}, 4 * m, [&](auto zero, int64_t b0, int64_t b1) {
    using T = decltype(zero);
    gru_backward_rows<T>(b0, b1, m, dk.const_data_ptr<T>(), h.const_data_ptr<T>(), saved.const_data_ptr<T>(),
                         d_pre.data_ptr<T>(), d_u.data_ptr<T>(), dh.data_ptr<T>());
  });
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
  module.def("lstm_forward", &lstm_forward);
  module.def("lstm_backward", &lstm_backward);
  module.def("gru_forward", &gru_forward);
  module.def("gru_backward", &gru_backward);
}
