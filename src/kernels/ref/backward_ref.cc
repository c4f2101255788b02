// Reference attention backward. For every sequence, head and valid query
// row i it recomputes the forward in fp64 (forward_ref.cc's steps):
//
//   r_j = scale * (q . k_j)                  raw score
//   s_j = ModifyScore(r_j)                   softcap, ALiBi, mask
//   p_j = exp(s_j - m) / l                   softmax weight (undropped)
//   w_j = z_j p_j                            z_j: 0 dropped, 1/(1-p) kept
//   out = sum_j w_j v_j
//
// and pushes d_out (dO) back through it by the chain rule:
//
//   dv_j += w_j dO
//   dp_j  = z_j (dO . v_j)                   the gradient of p_j
//   ds_j  = p_j (dp_j - sum_l p_l dp_l)      through the softmax
//   dr_j  = ds_j * (1 - tanh^2(r_j / softcap))  (ds_j without softcap)
//   dq   += scale * dr_j k_j,   dk_j += scale * dr_j q
//
// ALiBi and the additive mask shift s_j by constants, so they pass ds_j
// through unchanged; hidden keys have p_j = 0 and get nothing. dk and dv of
// a key head sum over the heads_q / heads_kv query heads that share it. A row
// that sees no key, and rows past a sequence's valid length, contribute
// nothing, so their dq (and the dk, dv of keys nobody sees) stay 0.
#include "kernels/ref/backward_ref.h"

#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include "core/dropout.h"
#include "core/half.h"

namespace salience::ref {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

double Load(const TensorView& t, std::int64_t offset) {
  return core::LoadFloat(t, offset);
}

// The gradient buffers with their logical-shape strides.
struct Gradients {
  BackwardResult& result;
  std::int64_t seq_q, seq_k, heads_q, heads_kv, head_dim, head_dim_v;

  double* dq(std::int64_t b, std::int64_t i, std::int64_t h) {
    return &result.dq[((b * seq_q + i) * heads_q + h) * head_dim];
  }
  double* dk(std::int64_t b, std::int64_t j, std::int64_t g) {
    return &result.dk[((b * seq_k + j) * heads_kv + g) * head_dim];
  }
  double* dv(std::int64_t b, std::int64_t j, std::int64_t g) {
    return &result.dv[((b * seq_k + j) * heads_kv + g) * head_dim_v];
  }
};

// Rounds values[((b * seq + n) * heads + h) * dim + d] into t.
void StoreTensor(const TensorView& t, const std::vector<double>& values) {
  const std::int64_t batch = t.shape[0], seq = t.shape[1];
  const std::int64_t heads = t.shape[2], dim = t.shape[3];
  for (std::int64_t b = 0; b < batch; ++b) {
    for (std::int64_t n = 0; n < seq; ++n) {
      for (std::int64_t h = 0; h < heads; ++h) {
        for (std::int64_t d = 0; d < dim; ++d) {
          core::StoreFloat(t, t.Offset(b, n, h, d),
                           static_cast<float>(values[((b * seq + n) * heads + h) * dim + d]));
        }
      }
    }
  }
}

// The backward of local query row i of sequence s, head h.
void BackwardRow(const core::Problem& p, const core::Dropout& dropout,
                 const core::SeqSpan& seq, std::int64_t s, std::int64_t h,
                 std::int64_t i, Gradients& grads) {
  const core::KeyRange keys = p.Keys(seq, i);
  if (keys.end <= keys.begin) return;
  const std::int64_t b = seq.tensor_batch;
  const std::int64_t q_row = seq.q_begin + i;
  const std::int64_t kv_head = h / p.group_size();
  const double scale = p.scale;
  const std::int64_t count = keys.end - keys.begin;
  auto q_at = [&](std::int64_t d) {
    return Load(p.q, p.q.Offset(b, q_row, h, d));
  };
  auto k_at = [&](std::int64_t j, std::int64_t d) {
    return Load(p.k, p.k.Offset(b, seq.k_begin + j, kv_head, d));
  };
  auto v_at = [&](std::int64_t j, std::int64_t c) {
    return Load(p.v, p.v.Offset(b, seq.k_begin + j, kv_head, c));
  };
  auto d_out_at = [&](std::int64_t c) {
    return Load(p.d_out, p.d_out.Offset(b, q_row, h, c));
  };

  // The forward: raw scores, modified scores, softmax weights.
  std::vector<double> raw(count), score(count), weight(count, 0.0);
  double row_max = kNegInf;
  bool sees_a_key = false;
  for (std::int64_t j = keys.begin; j < keys.end; ++j) {
    double dot = 0.0;
    for (std::int64_t d = 0; d < p.head_dim; ++d) dot += q_at(d) * k_at(j, d);
    raw[j - keys.begin] = scale * dot;
    score[j - keys.begin] =
        core::ModifyScore<double>(p, seq, s, h, i, j, raw[j - keys.begin]);
    if (score[j - keys.begin] != kNegInf) sees_a_key = true;
    if (score[j - keys.begin] > row_max) row_max = score[j - keys.begin];
  }
  if (!sees_a_key) return;  // out = 0 whatever q, k, v: zero gradients
  double row_sum = 0.0;
  for (std::int64_t n = 0; n < count; ++n) {
    if (score[n] == kNegInf) continue;
    weight[n] = std::exp(score[n] - row_max);
    row_sum += weight[n];
  }
  for (double& w : weight) w /= row_sum;

  // dv, and the gradient of each weight before the softmax (dp_j).
  std::vector<double> d_weight(count, 0.0), drop(count, 0.0);
  double weighted_sum = 0.0;  // sum_l p_l dp_l
  for (std::int64_t j = keys.begin; j < keys.end; ++j) {
    const std::int64_t n = j - keys.begin;
    if (score[n] == kNegInf) continue;
    drop[n] = !dropout.enabled() || dropout.Keeps(s, p.heads_q, h, i, j)
                  ? static_cast<double>(dropout.keep_scale())
                  : 0.0;
    if (drop[n] == 0.0) continue;
    double* dv = grads.dv(b, seq.k_begin + j, kv_head);
    double dot = 0.0;
    for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
      dv[c] += drop[n] * weight[n] * d_out_at(c);
      dot += d_out_at(c) * v_at(j, c);
    }
    d_weight[n] = drop[n] * dot;
    weighted_sum += weight[n] * d_weight[n];
  }

  // Through the softmax and the softcap to the raw score, then to q and k.
  double* dq = grads.dq(b, q_row, h);
  for (std::int64_t j = keys.begin; j < keys.end; ++j) {
    const std::int64_t n = j - keys.begin;
    if (score[n] == kNegInf) continue;
    double d_raw = weight[n] * (d_weight[n] - weighted_sum);
    if (p.options.softcap > 0.0f) {
      const double t =
          std::tanh(raw[n] / static_cast<double>(p.options.softcap));
      d_raw *= 1.0 - t * t;
    }
    double* dk = grads.dk(b, seq.k_begin + j, kv_head);
    for (std::int64_t d = 0; d < p.head_dim; ++d) {
      dq[d] += scale * d_raw * k_at(j, d);
      dk[d] += scale * d_raw * q_at(d);
    }
  }
}

}  // namespace

BackwardResult Backward(const core::Problem& p) {
  const std::int64_t batch = p.q.shape[0];
  BackwardResult result;
  Gradients grads{result,     p.q.shape[1], p.k.shape[1], p.heads_q,
                  p.heads_kv, p.head_dim,   p.head_dim_v};
  result.dq.assign(batch * grads.seq_q * p.heads_q * p.head_dim, 0.0);
  result.dk.assign(batch * grads.seq_k * p.heads_kv * p.head_dim, 0.0);
  result.dv.assign(batch * grads.seq_k * p.heads_kv * p.head_dim_v, 0.0);
  const core::Dropout dropout(p.options);
  for (std::int64_t s = 0; s < p.num_seqs; ++s) {
    const core::SeqSpan seq = p.Seq(s);
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      for (std::int64_t i = 0; i < seq.q_len; ++i) {
        BackwardRow(p, dropout, seq, s, h, i, grads);
      }
    }
  }
  return result;
}

void StoreBackward(const core::Problem& p, const BackwardResult& result) {
  StoreTensor(p.dq, result.dq);
  StoreTensor(p.dk, result.dk);
  StoreTensor(p.dv, result.dv);
}

}  // namespace salience::ref
