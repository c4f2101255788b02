// Argument validation of the decode entry points (salience/decode.h): every
// check runs once, before any kernel touches memory, and a failure returns a
// Status naming the argument and the expected versus actual value.
#pragma once

#include "core/decode_problem.h"
#include "salience/decode.h"

namespace salience::core {

// Checks q, the cache (tensors, lengths, page table, appended rows), out,
// lse and options, and fills `problem` (in place: it is not copyable).
Status ValidateDecode(const TensorView& q, const KvCache& cache,
                      const TensorView& out, const AttentionOptions& options,
                      const TensorView* lse, DecodeProblem* problem);

// Checks the arguments of MergeAttentionStates.
Status ValidateMerge(const TensorView& out_a, const TensorView& lse_a,
                     const TensorView& out_b, const TensorView& lse_b,
                     const TensorView& out, const TensorView* lse);

}  // namespace salience::core
