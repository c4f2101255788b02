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

// Threads to use for a request of `requested` (0 = all cores), at least 1.
int ResolveThreads(int requested);

}  // namespace salience::core
