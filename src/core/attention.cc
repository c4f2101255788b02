// The public entry points: validate once, then hand a Problem to a kernel.
#include "salience/attention.h"

#include <cstdint>
#include <vector>

#include "core/decode_problem.h"
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

// Runs a decode-shaped forward as a decode call: k and v become a
// contiguous cache holding every sequence's keys (options.seqlens_k, when
// given, its lengths), q and out as they are. Returns false, computing nothing,
// where the decode validation declines the call (the prefill kernel then runs
// it).
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
  core::DecodeProblem decode;
  if (!core::ValidateDecode(q, cache, out, decode_options, lse, &decode).ok()) {
    return false;
  }
  *status = simd::Decode(decode);
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
