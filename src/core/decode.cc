// The decode entry points (salience/decode.h): validate once, append the new
// rows to the cache, then hand the DecodeProblem to a kernel; and the public
// merge of attention states.
#include "salience/decode.h"

#include <cstdint>
#include <cstring>

#include "core/decode_problem.h"
#include "core/half.h"
#include "core/validate_decode.h"
#include "kernels/merge_states.h"
#include "kernels/ref/decode_ref.h"
#include "kernels/simd/decode.h"

namespace salience {
namespace {

// Copies k_new / v_new into the cache at positions seqlens[b] .. k_len - 1
// of each sequence (same dtype: a copy of elements). Serial: a decode step
// appends a few rows, and sequences never share the pages written.
void AppendNewRows(const core::DecodeProblem& d) {
  const KvCache& c = d.cache;
  const std::size_t size = DTypeSize(c.k.dtype);
  auto copy = [size](const TensorView& dst, std::int64_t dst_at,
                     const TensorView& src, std::int64_t src_at) {
    std::memcpy(static_cast<char*>(dst.data) + dst_at * size,
                static_cast<const char*>(src.data) + src_at * size, size);
  };
  for (std::int64_t b = 0; b < d.attn.num_seqs; ++b) {
    for (std::int64_t t = 0; t < d.seqlen_new; ++t) {
      const std::int64_t j = c.seqlens[b] - d.Start(b) + t;  // key index
      for (std::int64_t g = 0; g < d.attn.heads_kv; ++g) {
        const std::int64_t k_at = d.KeyOffset(b, j, g);
        const std::int64_t v_at = d.ValueOffset(b, j, g);
        for (std::int64_t e = 0; e < d.attn.head_dim; ++e) {
          copy(c.k, k_at + e * c.k.strides[3], c.k_new,
               c.k_new.Offset(b, t, g, e));
        }
        for (std::int64_t e = 0; e < d.attn.head_dim_v; ++e) {
          copy(c.v, v_at + e * c.v.strides[3], c.v_new,
               c.v_new.Offset(b, t, g, e));
        }
      }
    }
  }
}

// What both entry points do first: validate every argument, then append
// k_new/v_new into the cache.
Status PrepareDecode(const TensorView& q, const KvCache& cache,
                     const TensorView& out, const AttentionOptions& options,
                     const TensorView* lse, core::DecodeProblem* problem) {
  Status status = core::ValidateDecode(q, cache, out, options, lse, problem);
  if (status.ok()) AppendNewRows(*problem);
  return status;
}

}  // namespace

Status AttentionWithKvCache(const TensorView& q, const KvCache& cache,
                            const TensorView& out,
                            const AttentionOptions& options,
                            const TensorView* lse) {
  core::DecodeProblem problem;
  Status status = PrepareDecode(q, cache, out, options, lse, &problem);
  if (!status.ok()) return status;
  return simd::Decode(problem);
}

Status AttentionWithKvCacheReference(const TensorView& q, const KvCache& cache,
                                     const TensorView& out,
                                     const AttentionOptions& options,
                                     const TensorView* lse) {
  core::DecodeProblem problem;
  Status status = PrepareDecode(q, cache, out, options, lse, &problem);
  if (!status.ok()) return status;
  ref::Store(problem.attn, ref::Decode(problem));
  return Status::Ok();
}

Status MergeAttentionStates(const TensorView& out_a, const TensorView& lse_a,
                            const TensorView& out_b, const TensorView& lse_b,
                            const TensorView& out, const TensorView* lse) {
  Status status = core::ValidateMerge(out_a, lse_a, out_b, lse_b, out, lse);
  if (!status.ok()) return status;
  for (std::int64_t n = 0; n < out.shape[0]; ++n) {
    for (std::int64_t i = 0; i < out.shape[1]; ++i) {
      for (std::int64_t h = 0; h < out.shape[2]; ++h) {
        const float lses[2] = {
            static_cast<const float*>(lse_a.data)[lse_a.Offset(n, h, i)],
            static_cast<const float*>(lse_b.data)[lse_b.Offset(n, h, i)]};
        float weights[2];
        const float merged_lse = kernels::MergeWeights(lses, 2, weights);
        for (std::int64_t c = 0; c < out.shape[3]; ++c) {
          // A side of weight 0 is not read: an empty state may hold anything.
          // bf16/fp16 sides are widened exactly; out is rounded once.
          float value = 0.0f;
          if (weights[0] != 0.0f)
            value +=
                weights[0] * core::LoadFloat(out_a, out_a.Offset(n, i, h, c));
          if (weights[1] != 0.0f)
            value +=
                weights[1] * core::LoadFloat(out_b, out_b.Offset(n, i, h, c));
          core::StoreFloat(out, out.Offset(n, i, h, c), value);
        }
        if (lse != nullptr) {
          static_cast<float*>(lse->data)[lse->Offset(n, h, i)] = merged_lse;
        }
      }
    }
  }
  return Status::Ok();
}

}  // namespace salience
