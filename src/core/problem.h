// The validated, resolved form of one attention call. Validation
// (validate.cc) turns the public tensors and options into a Problem once;
// every kernel below the boundary reads it and may assume it is consistent.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>

#include "salience/attention.h"

namespace salience::core {

// One sequence of the batch: where its rows live and how many are valid.
struct SeqSpan {
  std::int64_t tensor_batch;  // index on the tensors' batch axis
  std::int64_t q_begin;       // first row on q/out's seq axis
  std::int64_t q_len;         // valid query rows
  std::int64_t q_rows;        // rows owned on the seq axis (>= q_len)
  std::int64_t k_begin;       // first row on k/v's seq axis
  std::int64_t k_len;         // valid keys
};

// Which keys query row i (local to its sequence) may see, before any mask
// tensor: the intersection of [0, k_len), the causal bound and the window.
// Shared by the reference and the fast kernel so both read one definition.
struct KeyRange {
  std::int64_t begin;  // first visible key
  std::int64_t end;    // one past the last visible key (end <= begin: none)
};

struct Problem {
  TensorView q, k, v, out;
  const TensorView* lse = nullptr;  // [batch, heads_q, seq_q] or null
  // The backward's tensors (ValidateBackward; unset for a forward): the
  // loss's gradient of out, and the gradients written, shaped like q, k, v.
  TensorView d_out, dq, dk, dv;

  std::int64_t num_seqs = 0;
  std::int64_t heads_q = 0, heads_kv = 0;
  std::int64_t head_dim = 0, head_dim_v = 0;
  std::int64_t max_q_len = 0, max_k_len = 0;
  float scale = 1.0f;

  bool varlen = false;
  AttentionOptions options;  // spans point into the caller's arrays

  // Mask view with size-1 axes turned into stride 0 (null data: no mask).
  TensorView mask;
  std::int64_t alibi_batch_stride = 0;  // 0: slopes shared across batch

  int num_threads = 1;

  std::int64_t group_size() const { return heads_q / heads_kv; }

  SeqSpan Seq(std::int64_t s) const {
    const AttentionOptions& o = options;
    if (varlen) {
      const std::int64_t qb = o.cu_seqlens_q[s], kb = o.cu_seqlens_k[s];
      const std::int64_t ql = o.cu_seqlens_q[s + 1] - qb;
      return {0, qb, ql, ql, kb, o.cu_seqlens_k[s + 1] - kb};
    }
    const std::int64_t ql = o.seqlens_q.empty() ? q.shape[1] : o.seqlens_q[s];
    const std::int64_t kl = o.seqlens_k.empty() ? k.shape[1] : o.seqlens_k[s];
    return {s, 0, ql, q.shape[1], 0, kl};
  }

  // The query row's visible key range from lengths, causal and window.
  KeyRange Keys(const SeqSpan& seq, std::int64_t i) const {
    const AttentionOptions& o = options;
    const std::int64_t shift = seq.k_len - seq.q_len;
    std::int64_t begin = 0, end = seq.k_len;
    if (o.causal == Causal::kTopLeft) end = std::min(end, i + 1);
    if (o.causal == Causal::kBottomRight) end = std::min(end, i + shift + 1);
    const std::int64_t anchor =
        i + (o.window_align == Align::kBottomRight ? shift : 0);
    // Compared as distances from the anchor, so that a window of any size
    // (up to INT64_MAX, which is unbounded in effect) cannot overflow.
    if (o.window_left >= 0 && o.window_left < anchor - begin) {
      begin = anchor - o.window_left;
    }
    if (o.window_right >= 0 && o.window_right < end - 1 - anchor) {
      end = anchor + o.window_right + 1;
    }
    return {begin, end};
  }

  bool has_score_mods() const {
    return mask.data != nullptr || !options.alibi_slopes.empty() ||
           options.softcap > 0.0f;
  }

  float AlibiSlope(std::int64_t s, std::int64_t h) const {
    return options.alibi_slopes[s * alibi_batch_stride + h];
  }
};

// Applies softcap, ALiBi and the mask tensor to one scaled score `s` of
// sequence `s_idx`, head h, local query i, local key j that the key range
// already admits. Returns -inf when the mask hides the key. T is float in the
// fast kernel and double in the reference: one definition for both.
template <typename T>
inline T ModifyScore(const Problem& p, const SeqSpan& seq, std::int64_t s_idx,
                     std::int64_t h, std::int64_t i, std::int64_t j, T s) {
  const AttentionOptions& o = p.options;
  if (o.softcap > 0.0f) {
    const T cap = static_cast<T>(o.softcap);
    s = cap * std::tanh(s / cap);
  }
  if (!o.alibi_slopes.empty()) {
    const std::int64_t dist = i + seq.k_len - seq.q_len - j;
    s -= static_cast<T>(p.AlibiSlope(s_idx, h)) *
         static_cast<T>(dist < 0 ? -dist : dist);
  }
  if (p.mask.data != nullptr) {
    const std::int64_t off = p.mask.Offset(s_idx, h, i, j);
    if (p.mask.dtype == DType::kBool) {
      if (static_cast<const std::uint8_t*>(p.mask.data)[off] == 0) {
        return -std::numeric_limits<T>::infinity();
      }
    } else {
      const float add = static_cast<const float*>(p.mask.data)[off];
      if (add == -std::numeric_limits<float>::infinity()) {
        return -std::numeric_limits<T>::infinity();
      }
      s += static_cast<T>(add);
    }
  }
  return s;
}

}  // namespace salience::core
