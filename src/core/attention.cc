// The public entry points: validate once, then hand a Problem to a kernel.
#include "salience/attention.h"

#include <cstdint>
#include <new>
#include <vector>

#include "core/decode_problem.h"
#include "core/half.h"
#include "core/validate.h"
#include "core/validate_decode.h"
#include "kernels/ref/backward_ref.h"
#include "kernels/ref/forward_ref.h"
#include "kernels/simd/backward.h"
#include "kernels/simd/decode.h"
#include "kernels/simd/forward.h"
#include "salience/decode.h"

namespace salience {
namespace {

// Whether the decode kernel computes a validated forward faster than the
// prefill kernel: few query rows per kv head (a decode step, a few
// speculative tokens). Measured on Zen 5 (docs/design.md, "Forward calls of
// decode shape"). What the decode path supports (no mask tensor, dropout,
// varlen batch or query padding) its own validation decides
// (ForwardAsDecode).
bool DecodeShaped(const core::Problem& p) {
  const std::int64_t rows = p.group_size() * p.max_q_len;
  return rows <= simd::kDecodeRouteRows ||
         (rows <= simd::kDecodeRouteRowsLong &&
          p.max_k_len >= simd::kDecodeRouteLongKeys);
}

// The elements of a [B, N, H, D] view, widened to fp32 in a contiguous
// [B, N, H, D] buffer (to == false), or that buffer rounded back into the
// view (to == true).
void CopyRows(const TensorView& t, std::vector<float>& buffer, bool to) {
  std::size_t at = 0;
  for (std::int64_t b = 0; b < t.shape[0]; ++b) {
    for (std::int64_t i = 0; i < t.shape[1]; ++i) {
      for (std::int64_t h = 0; h < t.shape[2]; ++h) {
        for (std::int64_t e = 0; e < t.shape[3]; ++e, ++at) {
          if (to) {
            core::StoreFloat(t, t.Offset(b, i, h, e), buffer[at]);
          } else {
            buffer[at] = core::LoadFloat(t, t.Offset(b, i, h, e));
          }
        }
      }
    }
  }
}

TensorView F32Rows(std::vector<float>& buffer, const TensorView& t) {
  buffer.resize(static_cast<std::size_t>(t.shape[0] * t.shape[1] * t.shape[2] *
                                         t.shape[3]));
  return TensorView::Bnhd(buffer.data(), DType::kF32, t.shape[0], t.shape[1],
                          t.shape[2], t.shape[3]);
}

// Runs a decode-shaped forward as a decode call: k and v become a
// contiguous cache holding every sequence's keys (options.seqlens_k, when
// given, its lengths). bf16/fp16 q and out go through fp32 copies (the
// decode kernel takes fp32 queries; out is rounded once, at the end).
// Returns false, computing nothing, where the decode validation declines the
// call (the prefill kernel then runs it).
bool ForwardAsDecode(const TensorView& q, const TensorView& k,
                     const TensorView& v, const TensorView& out,
                     const AttentionOptions& options, const TensorView* lse,
                     const core::Problem& problem, Status* status) {
  std::vector<std::int32_t> lens(static_cast<std::size_t>(problem.num_seqs));
  for (std::int64_t s = 0; s < problem.num_seqs; ++s) {
    lens[static_cast<std::size_t>(s)] =
        static_cast<std::int32_t>(problem.Seq(s).k_len);
  }
  KvCache cache;
  cache.k = k;
  cache.v = v;
  cache.seqlens = lens;
  AttentionOptions decode_options = options;
  decode_options.seqlens_k = {};
  const bool widen = q.dtype != DType::kF32;
  std::vector<float> q32, out32;
  TensorView q_view = q, out_view = out;
  if (widen) {
    try {
      q_view = F32Rows(q32, q);
      out_view = F32Rows(out32, out);
    } catch (const std::bad_alloc&) {
      return false;  // the prefill kernel needs no copies
    }
  }
  core::DecodeProblem decode;
  if (!core::ValidateDecode(q_view, cache, out_view, decode_options, lse,
                            &decode)
           .ok()) {
    return false;
  }
  if (widen) CopyRows(q, q32, false);
  *status = simd::Decode(decode);
  if (widen && status->ok()) CopyRows(out, out32, true);
  return true;
}

}  // namespace

Status AttentionForward(const TensorView& q, const TensorView& k,
                        const TensorView& v, const TensorView& out,
                        const AttentionOptions& options,
                        const TensorView* lse) {
  core::Problem problem;
  Status status = core::ValidateForward(q, k, v, out, options, lse, &problem);
  if (!status.ok()) return status;
  if (DecodeShaped(problem) &&
      ForwardAsDecode(q, k, v, out, options, lse, problem, &status)) {
    return status;
  }
  return simd::Forward(problem);
}

Status AttentionForwardReference(const TensorView& q, const TensorView& k,
                                 const TensorView& v, const TensorView& out,
                                 const AttentionOptions& options,
                                 const TensorView* lse) {
  core::Problem problem;
  Status status = core::ValidateForward(q, k, v, out, options, lse, &problem);
  if (!status.ok()) return status;
  ref::Store(problem, ref::Forward(problem));
  return Status::Ok();
}

Status AttentionBackward(const TensorView& q, const TensorView& k,
                         const TensorView& v, const TensorView& out,
                         const TensorView& d_out, const TensorView& lse,
                         const TensorView& dq, const TensorView& dk,
                         const TensorView& dv,
                         const AttentionOptions& options) {
  core::Problem problem;
  Status status = core::ValidateBackward(q, k, v, out, d_out, lse, dq, dk, dv,
                                         options, &problem);
  if (!status.ok()) return status;
  return simd::Backward(problem);
}

Status AttentionBackwardReference(const TensorView& q, const TensorView& k,
                                  const TensorView& v, const TensorView& out,
                                  const TensorView& d_out,
                                  const TensorView& lse, const TensorView& dq,
                                  const TensorView& dk, const TensorView& dv,
                                  const AttentionOptions& options) {
  core::Problem problem;
  Status status = core::ValidateBackward(q, k, v, out, d_out, lse, dq, dk, dv,
                                         options, &problem);
  if (!status.ok()) return status;
  ref::StoreBackward(problem, ref::Backward(problem));
  return Status::Ok();
}

}  // namespace salience
