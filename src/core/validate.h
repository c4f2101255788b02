// Argument validation at the API boundary: every public entry point calls
// this once; kernels below it assume a consistent Problem.
#pragma once

#include "core/problem.h"
#include "salience/attention.h"

namespace salience::core {

// Checks q, k, v, out, lse and options against each other and fills
// `problem`. The message of a failed Status names the argument and the
// expected versus actual value.
Status ValidateForward(const TensorView& q, const TensorView& k,
                       const TensorView& v, const TensorView& out,
                       const AttentionOptions& options, const TensorView* lse,
                       Problem* problem);

// The backward's checks: ValidateForward's for q, k, v, out and options,
// then d_out (out's shape), lse (required, fp32, [batch, heads_q, seq_q],
// any strides: it is read only) and dq, dk, dv (q's, k's and v's shapes,
// fp32, writable). Fills `problem` with the backward tensors set.
Status ValidateBackward(const TensorView& q, const TensorView& k,
                        const TensorView& v, const TensorView& out,
                        const TensorView& d_out, const TensorView& lse,
                        const TensorView& dq, const TensorView& dk,
                        const TensorView& dv, const AttentionOptions& options,
                        Problem* problem);

// Threads to use for a request of `requested` (0 = all cores), at least 1.
int ResolveThreads(int requested);

}  // namespace salience::core
