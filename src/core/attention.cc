// The public entry points: validate once, then hand a Problem to a kernel.
#include "salience/attention.h"

#include "core/validate.h"
#include "kernels/ref/backward_ref.h"
#include "kernels/ref/forward_ref.h"
#include "kernels/simd/backward.h"
#include "kernels/simd/forward.h"

namespace salience {

Status AttentionForward(const TensorView& q, const TensorView& k,
                        const TensorView& v, const TensorView& out,
                        const AttentionOptions& options,
                        const TensorView* lse) {
  core::Problem problem;
  Status status = core::ValidateForward(q, k, v, out, options, lse, &problem);
  if (!status.ok()) return status;
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
