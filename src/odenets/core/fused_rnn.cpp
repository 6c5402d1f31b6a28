// The time loop of `odenets.core.fused_rnn.rk_scan` on CPU: every step, stage and cell evaluation of a sequence,
// forward and backward, in one call each (issue 12).
//
// Written in Python, a Heun step of an LSTM is about twenty small torch calls per time step, and op by op
// each evaluation is fifteen elementwise kernels forward and twenty backward. Here an evaluation is one
// matrix product (h W^T, torch's BLAS on views of the buffers) and one vectorised loop over the batch rows
// that reads the pre-activations once and, while each block of rows is still in L1, adds the new increment
// k_i into the stage inputs and the next state that use it (z_m += hA_mi k_i, y' += hb_i k_i). The input
// projection u_t = x_t W_in^T and, backward, the gradients of W_in, the input bias and W_hh are formed per
// time step while their operands are in cache, instead of over (T, B, gates) buffers.
//
// Same formulas and the same stage plan (`StagePlan`) as the torch-op path of `fused_rnn.py`, which the tests
// compare with. float: exp by range reduction and a degree-6 polynomial (relative error below 2e-7),
// branch-free so the loops vectorise (built with -march=native by `fused_rnn.native_kernels`, once per CPU
// type); double: std::exp and std::tanh, so float64 tests compare at round-off.
//
// The scan's objects are read by attribute, by the names Python gives them: its `ScanSpec` (cell, stage plan,
// coefficients), its `ScanInputs` (x, the cell's parameters, the gate), its `ScanBuffers`, and `needed` (a
// `ScanInputs` of flags); the gradients go back by those names.
//
// Formatted by clang-format -style="{BasedOnStyle: Google, IndentWidth: 4, ColumnLimit: 120, IncludeBlocks:
// Preserve, AllowShortFunctionsOnASingleLine: All, PackConstructorInitializers: BinPack}".
#include <torch/extension.h>

#include <ATen/Parallel.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#define ODENETS_INLINE inline __attribute__((always_inline))  // into the loops, so they vectorise

namespace {

using at::Tensor;

// e^x = (1 + q) 2^n with q = e^r - 1, r = x - n ln 2, |r| <= ln 2 / 2: range reduction and a degree-6 polynomial
// (relative error below 2e-7), branch-free (comparisons, not fmin/fmax: a NaN stays NaN).
struct Reduced {
    float q, scale;
};

ODENETS_INLINE Reduced reduce(float x) {
    x = x < -87.0f ? -87.0f : x;
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
    return {p * r * r + r, std::bit_cast<float>((n + 127) << 23)};
}

ODENETS_INLINE float exp_(float x) {
    const Reduced e = reduce(x);
    return (e.q + 1.0f) * e.scale;
}

ODENETS_INLINE double exp_(double x) { return std::exp(x); }

template <typename T>
ODENETS_INLINE T sigmoid(T x) {
    return T(1) / (T(1) + exp_(-x));
}

// tanh x = (e^2x - 1) / (e^2x + 1) with e^2x - 1 formed without cancellation (q exactly when n = 0), so it
// keeps its relative accuracy as x -> 0, where 1 - 2 / (1 + e^2x) does not.
ODENETS_INLINE float tanh_(float x) {
    const Reduced e = reduce(2.0f * x);
    const float em1 = e.q * e.scale + (e.scale - 1.0f);
    return em1 / (em1 + 2.0f);
}

ODENETS_INLINE double tanh_(double x) { return std::tanh(x); }

// LSTM, state z = [h; c] (B, 2n), gates (B, 4n) in torch's order i, f, g, o.
// In: gates holds h W^T, u + bias the input half; out: gates holds i, f, g, o, k = [h' - h; c' - c],
// tanh_c = tanh(c').
template <typename T>
void lstm_forward_rows(int64_t b0, int64_t b1, int64_t n, T* gates, const T* u, const T* bias, const T* z, T* k,
                       T* tanh_c) {
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
void lstm_backward_rows(int64_t b0, int64_t b1, int64_t n, const T* dk, const T* z, const T* act, const T* tanh_c,
                        T* d_pre, T* dz) {
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
void gru_forward_rows(int64_t b0, int64_t b1, int64_t m, const T* hh, const T* u, const T* bias, const T* h,
                      const T* bias_n, T* saved, T* k) {
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
void gru_backward_rows(int64_t b0, int64_t b1, int64_t m, const T* dk, const T* h, const T* saved, T* d_pre, T* d_u,
                       T* dh) {
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

// Tanh RNN, k = tanh(h W^T + u + bias): in, k holds h W^T.
template <typename T>
void tanh_forward_rows(int64_t b0, int64_t b1, int64_t n, T* k, const T* u, const T* bias) {
    const T* __restrict bb = bias;
    for (int64_t r = b0; r < b1; ++r) {
        T* __restrict kr = k + r * n;
        const T* __restrict ur = u + r * n;
#pragma GCC ivdep
        for (int64_t j = 0; j < n; ++j) kr[j] = tanh_(kr[j] + ur[j] + bb[j]);
    }
}

template <typename T>
void tanh_backward_rows(int64_t b0, int64_t b1, int64_t n, const T* dk, const T* k, T* d_pre) {
    for (int64_t r = b0; r < b1; ++r) {
        const T* __restrict d = dk + r * n;
        const T* __restrict kr = k + r * n;
        T* __restrict p = d_pre + r * n;
#pragma GCC ivdep
        for (int64_t j = 0; j < n; ++j) p[j] = d[j] * (T(1) - kr[j] * kr[j]);
    }
}

// ---------------------------------------------------------------------------------------------- the scan
enum class Cell { lstm, gru, rnn };

Cell cell_named(const std::string& name) {
    if (name == "lstm") return Cell::lstm;
    if (name == "gru") return Cell::gru;
    TORCH_CHECK(name == "rnn", "odenets fused_rnn: unknown cell ", name, " (lstm, gru, rnn)");
    return Cell::rnn;
}

Tensor tensor_or_undefined(const pybind11::object& o, const char* name) {  // None: undefined
    const pybind11::object value = o.attr(name);
    return value.is_none() ? Tensor() : value.cast<Tensor>();
}

// The scan's spec (`fused_rnn.ScanSpec`): the cell, the step's coefficients hA and hb (`A`, `b`, as numbers), and
// its stage plan (`odenets.core.stage_plan.StagePlan`, read as it is: which stages each stage reads, which read
// it, which enter the step, and the one that alone is the increment).
struct Spec {
    Cell cell;
    std::vector<std::vector<double>> A;
    std::vector<double> b;
    std::vector<std::vector<int64_t>> deps, users;
    std::vector<bool> outs;
    int64_t single;  // the stage whose k alone is the increment (h b = e_single), or -1

    explicit Spec(const pybind11::object& spec) : Spec(spec, spec.attr("plan")) {}

    bool reads(int64_t m, int64_t j) const { return std::find(deps[m].begin(), deps[m].end(), j) != deps[m].end(); }

   private:
    // A and b may have more stages than the plan: trailing ones nothing reads (Verner 8(9)'s embedded pair).
    Spec(const pybind11::object& spec, const pybind11::object& plan)
        : cell(cell_named(spec.attr("kernel").cast<std::string>())),
          A(spec.attr("A").cast<std::vector<std::vector<double>>>()), b(spec.attr("b").cast<std::vector<double>>()),
          deps(plan.attr("deps").cast<std::vector<std::vector<int64_t>>>()),
          users(plan.attr("users").cast<std::vector<std::vector<int64_t>>>()),
          outs(plan.attr("outs").cast<std::vector<bool>>()),
          single(plan.attr("single").is_none() ? -1 : plan.attr("single").cast<int64_t>()) {
        const size_t s = outs.size();
        TORCH_CHECK(A.size() >= s && b.size() >= s && deps.size() == s && users.size() == s,
                    "odenets fused_rnn: tableau and stage plan sizes disagree");
    }
};

// The scan's tensors (`fused_rnn.ScanInputs`): x (T B, F), the cell's parameters W_in (G, F), the input bias (G),
// W_hh (G, n) and the GRU's b_hn (n), and the step's gate (T, S); undefined where None.
struct Inputs {
    Tensor x, w_in, bias, W, bias_n, gate;

    explicit Inputs(const pybind11::object& o)
        : x(o.attr("x").cast<Tensor>()), w_in(o.attr("w_in").cast<Tensor>()), bias(o.attr("bias").cast<Tensor>()),
          W(o.attr("w_hh").cast<Tensor>()), bias_n(tensor_or_undefined(o, "b_hn")),
          gate(tensor_or_undefined(o, "gate")) {}
};

// Which gradients the backward forms (`needed`: a `fused_rnn.ScanInputs` of flags, read by name).
struct Needed {
    bool x, w_in, bias, hA, hb, gate, w_hh, b_hn;

    explicit Needed(const pybind11::object& o)
        : x(flag(o, "x")), w_in(flag(o, "w_in")), bias(flag(o, "bias")), hA(flag(o, "hA")), hb(flag(o, "hb")),
          gate(flag(o, "gate")), w_hh(flag(o, "w_hh")), b_hn(flag(o, "b_hn")) {}

    static bool flag(const pybind11::object& o, const char* name) { return o.attr(name).cast<bool>(); }
};

// A (rows, cols) matrix with row stride ld over a buffer, for torch's BLAS (no copy, no allocation of data).
template <typename T>
Tensor mat(const T* p, int64_t rows, int64_t cols, int64_t ld) {
    return at::from_blob(const_cast<T*>(p), {rows, cols}, {ld, 1},
                         at::TensorOptions().dtype(c10::CppTypeToScalarType<T>::value));
}

// Where an increment k enters: out = (fresh ? y : out) + c k, row by row.
template <typename T>
struct Target {
    T* out;
    T c;
    bool fresh;
};

// The stage sums folded into the evaluation: on rows [b0, b1) of k, just written and still in L1.
template <typename T>
void scatter_rows(int64_t b0, int64_t b1, int64_t S, const T* k, const T* y, const Target<T>* targets, int64_t count) {
    for (int64_t r = b0; r < b1; ++r) {
        const T* __restrict kr = k + r * S;
        const T* __restrict yr = y + r * S;
        for (int64_t q = 0; q < count; ++q) {
            T* __restrict o = targets[q].out + r * S;
            const T c = targets[q].c;
            if (targets[q].fresh && c == T(0)) {
                for (int64_t e = 0; e < S; ++e) o[e] = yr[e];
            } else if (targets[q].fresh) {
#pragma GCC ivdep
                for (int64_t e = 0; e < S; ++e) o[e] = yr[e] + c * kr[e];
            } else {
#pragma GCC ivdep
                for (int64_t e = 0; e < S; ++e) o[e] += c * kr[e];
            }
        }
    }
}

// out (+)= sum_q c_q src_q over n elements.
template <typename T>
void combine(int64_t n, const std::vector<const T*>& src, const std::vector<T>& c, T* out) {
    T* __restrict o = out;
    for (size_t q = 0; q < src.size(); ++q) {
        const T* __restrict a = src[q];
        const T cq = c[q];
        if (q == 0) {
#pragma GCC ivdep
            for (int64_t e = 0; e < n; ++e) o[e] = cq * a[e];
        } else {
#pragma GCC ivdep
            for (int64_t e = 0; e < n; ++e) o[e] += cq * a[e];
        }
    }
    if (src.empty()) std::fill(out, out + n, T(0));
}

// Rows [b0, b1) of a (rows, width) block with row stride ld, added to (or, if fresh, copied into) out.
template <typename T>
void add_rows(int64_t b0, int64_t b1, int64_t width, const T* a, int64_t ld, T* out, int64_t ld_out, bool fresh) {
    for (int64_t r = b0; r < b1; ++r) {
        const T* __restrict ar = a + r * ld;
        T* __restrict o = out + r * ld_out;
        if (fresh) {
            for (int64_t e = 0; e < width; ++e) o[e] = ar[e];
        } else {
#pragma GCC ivdep
            for (int64_t e = 0; e < width; ++e) o[e] += ar[e];
        }
    }
}

// Column sums of a (rows, width) block with row stride ld, added to out (width).
template <typename T>
void add_column_sums(int64_t rows, int64_t width, const T* a, int64_t ld, T* out) {
    T* __restrict o = out;
    for (int64_t r = 0; r < rows; ++r) {
        const T* __restrict ar = a + r * ld;
#pragma GCC ivdep
        for (int64_t e = 0; e < width; ++e) o[e] += ar[e];
    }
}

template <typename T>
double dot(int64_t n, const T* a, const T* b) {
    double sum = 0;
    for (int64_t e = 0; e < n; ++e) sum += double(a[e]) * double(b[e]);
    return sum;
}

// body(b0, b1) on blocks of at most 8 batch rows (small enough to stay in L1 between the cell's loop and the
// stage sums), in parallel over torch's intra-op threads.
template <typename Body>
void over_row_blocks(int64_t B, int64_t width, const Body& body) {
    at::parallel_for(0, B, std::max<int64_t>(1, 16384 / width), [&](int64_t b0, int64_t b1) {
        for (int64_t r = b0; r < b1; r += 8) body(r, std::min(b1, r + 8));
    });
}

// The buffers of one sequence (`fused_rnn.ScanBuffers`): Z (T + 1, s, B, S) with Z[t, 0] = y_t and Z[t, i] the
// input of stage i; K (T, s, B, S) the increments; `saved` what the cell's backward reads (LSTM: i, f, g, o
// and tanh(c'); GRU: h W_n^T + b_n, r, z, n; tanh RNN: nothing, it reads k); `inc` (T, B, S) the combined
// increment of a gated step (Phased LSTM), unless one stage is the increment.
struct Buffers {
    Tensor Z, K, inc;
    std::vector<Tensor> saved;

    explicit Buffers(const pybind11::object& o)
        : Z(o.attr("Z").cast<Tensor>()), K(o.attr("K").cast<Tensor>()), inc(tensor_or_undefined(o, "inc")),
          saved(o.attr("saved").cast<std::vector<Tensor>>()) {}
};

// Every tensor of the scan (and `more`): contiguous, on the CPU, of x's dtype.
void check(const Inputs& in, const Buffers& buf, std::initializer_list<const Tensor*> more = {}) {
    std::vector<const Tensor*> tensors = {&in.x, &in.w_in, &in.bias, &in.W, &in.bias_n, &in.gate};
    tensors.insert(tensors.end(), {&buf.Z, &buf.K, &buf.inc});
    for (const Tensor& t : buf.saved) tensors.push_back(&t);
    tensors.insert(tensors.end(), more);
    for (const Tensor* t : tensors) {
        TORCH_CHECK(
            !t->defined() || (t->device().is_cpu() && t->is_contiguous() && t->scalar_type() == in.x.scalar_type()),
            "odenets fused_rnn: expected contiguous CPU tensors of one dtype");
    }
}

template <typename T>
T* at_step(const Tensor& t, int64_t index) {  // the (B, width) block `index` of a (T, s, B, width) buffer
    return const_cast<T*>(t.const_data_ptr<T>()) + index * t.size(2) * t.size(3);
}

// Forward: every step y_{t+1} = y_t + sum_i hb_i k_i (gated: y_t + g_t * sum_i hb_i k_i), k_i = F(z_i, u_t),
// z_i = y_t + sum_j hA_ij k_j, with u_t = x_t W_in^T (+ bias, inside the cell's loop). Fills Z, K, saved, inc.
template <typename T>
void forward_steps(const Spec& spec, const Inputs& in, const Buffers& buf) {
    const Cell cell = spec.cell;
    const Tensor &x2d = in.x, &w_in = in.w_in, &bias = in.bias, &W = in.W, &bias_n = in.bias_n, &gate = in.gate;
    const int64_t steps = buf.K.size(0), s = buf.K.size(1), B = buf.K.size(2), S = buf.K.size(3);
    const int64_t n = W.size(1), G = W.size(0), Fd = x2d.size(1), BS = B * S;
    const bool gated = gate.defined();
    Tensor u = at::empty({B, G}, x2d.options());
    const Tensor hh = at::empty({B, G}, x2d.options()), Wt = W.t(), w_in_t = w_in.t();
    const T *up = u.const_data_ptr<T>(), *bp = bias.const_data_ptr<T>(), *x = x2d.const_data_ptr<T>();
    const T* bnp = bias_n.defined() ? bias_n.const_data_ptr<T>() : nullptr;
    T *Zp = buf.Z.data_ptr<T>(), *Kp = buf.K.data_ptr<T>();
    std::fill(Zp, Zp + BS, T(0));
    std::vector<Target<T>> targets;
    std::vector<const T*> src;
    std::vector<T> coef;
    for (int64_t t = 0; t < steps; ++t) {
        T *zt = Zp + t * s * BS, *kt = Kp + t * s * BS, *next = Zp + (t + 1) * s * BS;
        const T* y = zt;
        at::mm_out(u, mat(x + t * B * Fd, B, Fd, Fd), w_in_t);
        for (int64_t i = 0; i < s; ++i) {
            T *z = zt + i * BS, *k = kt + i * BS;
            T* pre = cell == Cell::lstm  ? at_step<T>(buf.saved[0], t * s + i)
                     : cell == Cell::gru ? hh.data_ptr<T>()
                                         : k;
            Tensor pre_m = mat(pre, B, G, G);
            at::mm_out(pre_m, mat(z, B, n, S), Wt);  // h W^T, which the cell's loop turns into k
            targets.clear();
            if (i == 0) {  // every later stage input, and the next state, start from y
                for (int64_t m = 1; m < s; ++m)
                    targets.push_back({zt + m * BS, T(spec.reads(m, 0) ? spec.A[m][0] : 0.0), true});
                if (!gated) targets.push_back({next, T(spec.outs[0] ? spec.b[0] : 0.0), true});
            } else {
                for (int64_t m : spec.users[i]) targets.push_back({zt + m * BS, T(spec.A[m][i]), false});
                if (!gated && spec.outs[i]) targets.push_back({next, T(spec.b[i]), false});
            }
            over_row_blocks(B, G, [&](int64_t r0, int64_t r1) {
                if (cell == Cell::lstm)
                    lstm_forward_rows<T>(r0, r1, n, pre, up, bp, z, k, at_step<T>(buf.saved[1], t * s + i));
                else if (cell == Cell::gru)
                    gru_forward_rows<T>(r0, r1, n, pre, up, bp, z, bnp, at_step<T>(buf.saved[0], t * s + i), k);
                else
                    tanh_forward_rows<T>(r0, r1, n, k, up, bp);
                scatter_rows<T>(r0, r1, S, k, y, targets.data(), static_cast<int64_t>(targets.size()));
            });
        }
        if (gated) {  // y + g_t * increment, g_t per unit (Phased LSTM's time gate)
            const T* d = spec.single >= 0 ? kt + spec.single * BS : buf.inc.data_ptr<T>() + t * BS;
            if (spec.single < 0) {
                src.clear(), coef.clear();
                for (int64_t i = 0; i < s; ++i)
                    if (spec.outs[i]) src.push_back(kt + i * BS), coef.push_back(T(spec.b[i]));
                combine<T>(BS, src, coef, const_cast<T*>(d));
            }
            const T* g = gate.const_data_ptr<T>() + t * S;
            for (int64_t r = 0; r < B; ++r)
                for (int64_t e = 0; e < S; ++e) next[r * S + e] = y[r * S + e] + g[e] * d[r * S + e];
        }
    }
}

// Gradients by the names of `fused_rnn.ScanInputs`; undefined (None in Python) where not needed.
using Gradients = std::map<std::string, Tensor>;

// Backward: the adjoint of the same recursion, step by step in reverse. dk_i = hb_i dy' + sum_l hA_li dz_l,
// dz_i = F'(z_i)^T dk_i, dy <- dy' + sum_i dz_i; the weight gradients accumulate per step. Returns the gradients
// `needs` names (hA and hb in float64, shaped as they are).
template <typename T>
Gradients backward_steps(const Spec& spec, const Inputs& in, const Buffers& buf, const Tensor& d_hidden,
                         const Needed& needs) {
    const Cell cell = spec.cell;
    const Tensor &x2d = in.x, &w_in = in.w_in, &W = in.W, &gate = in.gate;
    const int64_t steps = buf.K.size(0), s = buf.K.size(1), B = buf.K.size(2), S = buf.K.size(3);
    const int64_t n = W.size(1), G = W.size(0), Fd = x2d.size(1), BS = B * S;
    const auto opt = x2d.options();
    const bool gated = gate.defined();
    const Tensor d_pre = at::empty({s, B, G}, opt), d_u = cell == Cell::gru ? at::empty({s, B, G}, opt) : d_pre;
    const Tensor DZ = at::empty({s, B, S}, opt), DK = at::empty({s, B, S}, opt), dy = at::zeros({B, S}, opt);
    const Tensor d_inc = gated ? at::empty({B, S}, opt) : dy, du_sum = at::empty({B, G}, opt);
    Tensor d_x, d_w_in_t, d_bias, d_gate, d_W_t, d_bias_n;
    if (needs.x) d_x = at::empty({steps * B, Fd}, opt);
    if (needs.w_in) d_w_in_t = at::zeros({Fd, G}, opt);
    if (needs.bias) d_bias = at::zeros({G}, opt);
    if (needs.gate) d_gate = at::zeros({steps, S}, opt);
    if (needs.w_hh) d_W_t = at::zeros({n, G}, opt);
    if (needs.b_hn) d_bias_n = at::zeros({n}, opt);
    const int64_t rows_A = static_cast<int64_t>(spec.A.size()), cols_A = static_cast<int64_t>(spec.A[0].size());
    std::vector<double> gA(rows_A * cols_A, 0.0), gb(spec.b.size(), 0.0);
    T *dp = d_pre.data_ptr<T>(), *dup = d_u.data_ptr<T>(), *dzp = DZ.data_ptr<T>(), *dkp = DK.data_ptr<T>();
    T *dyp = dy.data_ptr<T>(), *dip = d_inc.data_ptr<T>(), *dsum = du_sum.data_ptr<T>();
    const T *Zp = buf.Z.const_data_ptr<T>(), *Kp = buf.K.const_data_ptr<T>(), *x = x2d.const_data_ptr<T>();
    std::vector<const T*> src;
    std::vector<T> coef;
    for (int64_t t = steps - 1; t >= 0; --t) {
        const T *zt = Zp + t * s * BS, *kt = Kp + t * s * BS;
        add_rows<T>(0, B, n, d_hidden.const_data_ptr<T>() + t * B * n, n, dyp, S, false);
        if (gated) {
            const T* g = gate.const_data_ptr<T>() + t * S;
            const T* inc = spec.single >= 0 ? kt + spec.single * BS : buf.inc.const_data_ptr<T>() + t * BS;
            T* dg = needs.gate ? d_gate.data_ptr<T>() + t * S : nullptr;
            for (int64_t r = 0; r < B; ++r)
                for (int64_t e = 0; e < S; ++e) {
                    dip[r * S + e] = dyp[r * S + e] * g[e];
                    if (dg) dg[e] += dyp[r * S + e] * inc[r * S + e];
                }
        }
        for (int64_t i = s - 1; i >= 0; --i) {
            const T* dk = dip;
            if (i != spec.single) {  // dk_i = hb_i dy' + sum_l hA_li dz_l; the lone increment's is dy' itself
                src.clear(), coef.clear();
                if (spec.outs[i]) src.push_back(dip), coef.push_back(T(spec.b[i]));
                for (int64_t m : spec.users[i]) src.push_back(dzp + m * BS), coef.push_back(T(spec.A[m][i]));
                combine<T>(BS, src, coef, dkp + i * BS);
                dk = dkp + i * BS;
            }
            const T *z = zt + i * BS, *k = kt + i * BS;
            T *pre = dp + i * B * G, *du = dup + i * B * G, *dz = dzp + i * BS;
            over_row_blocks(B, G, [&](int64_t r0, int64_t r1) {
                if (cell == Cell::lstm)
                    lstm_backward_rows<T>(r0, r1, n, dk, z, at_step<T>(buf.saved[0], t * s + i),
                                          at_step<T>(buf.saved[1], t * s + i), pre, dz);
                else if (cell == Cell::gru)
                    gru_backward_rows<T>(r0, r1, n, dk, z, at_step<T>(buf.saved[0], t * s + i), pre, du, dz);
                else
                    tanh_backward_rows<T>(r0, r1, n, dk, k, pre);
                if (s > 1) add_rows<T>(r0, r1, G, du, G, dsum, G, i == s - 1);  // u's gradient, summed over the stages
            });
            Tensor dz_h = mat(dz, B, n, S);
            if (cell == Cell::rnn)
                at::mm_out(dz_h, mat(pre, B, G, G), W);
            else
                dz_h.addmm_(mat(pre, B, G, G), W);
        }
        if (needs.hA)
            for (int64_t m = 0; m < s; ++m)
                for (int64_t j : spec.deps[m]) gA[m * cols_A + j] += dot<T>(BS, dzp + m * BS, kt + j * BS);
        if (needs.hb)
            for (int64_t i = 0; i < s; ++i)
                if (spec.outs[i]) gb[i] += dot<T>(BS, dip, kt + i * BS);
        if (needs.w_hh) d_W_t.addmm_(mat(zt, s * B, n, S).t(), mat(dp, s * B, G, G));  // while d_pre[t] is in cache
        if (needs.b_hn) add_column_sums<T>(s * B, n, dp + 2 * n, G, d_bias_n.data_ptr<T>());  // b_hn: the n-gate block
        const T* du_t = s > 1 ? dsum : dup;
        const Tensor du_m = mat(du_t, B, G, G), x_t = mat(x + t * B * Fd, B, Fd, Fd);
        if (needs.w_in) d_w_in_t.addmm_(x_t.t(), du_m);  // this order: MKL's faster one
        if (needs.bias) add_column_sums<T>(B, G, du_t, G, d_bias.data_ptr<T>());
        if (needs.x) {
            Tensor d_x_t = mat(d_x.data_ptr<T>() + t * B * Fd, B, Fd, Fd);
            at::mm_out(d_x_t, du_m, w_in);
        }
        for (int64_t i = 0; i < s; ++i) add_rows<T>(0, B, S, dzp + i * BS, S, dyp, S, false);
    }
    const auto f64 = at::TensorOptions().dtype(at::kDouble);
    return {{"x", d_x},
            {"w_in", needs.w_in ? d_w_in_t.t() : Tensor()},
            {"bias", d_bias},
            {"w_hh", needs.w_hh ? d_W_t.t() : Tensor()},
            {"b_hn", d_bias_n},
            {"hA", needs.hA ? at::tensor(gA, f64).view({rows_A, cols_A}) : Tensor()},
            {"hb", needs.hb ? at::tensor(gb, f64) : Tensor()},
            {"gate", d_gate}};
}

// Fills `buffers` (a `fused_rnn.ScanBuffers`) for the `spec` and `inputs` (`fused_rnn.ScanSpec`, `ScanInputs`).
void scan_forward(const pybind11::object& spec, const pybind11::object& inputs, const pybind11::object& buffers) {
    const Spec sp(spec);
    const Inputs in(inputs);
    const Buffers buf(buffers);
    check(in, buf);
    AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "odenets_scan_forward",
                               [&] { forward_steps<scalar_t>(sp, in, buf); });
}

// The gradients `needed` names (a `fused_rnn.ScanInputs` of flags), by name, from what `scan_forward` left in
// `buffers` and the gradient of the hidden states (T, B, H).
Gradients scan_backward(const pybind11::object& spec, const pybind11::object& inputs, const pybind11::object& buffers,
                        const Tensor& d_hidden, const pybind11::object& needed) {
    const Spec sp(spec);
    const Inputs in(inputs);
    const Buffers buf(buffers);
    const Needed needs(needed);
    check(in, buf, {&d_hidden});
    Gradients grads;
    AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "odenets_scan_backward",
                               [&] { grads = backward_steps<scalar_t>(sp, in, buf, d_hidden, needs); });
    return grads;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, module) {
    module.def("scan_forward", &scan_forward);
    module.def("scan_backward", &scan_backward);
}
