// Reference attention backward: the gradients of the forward's definition
// (attention.h), computed literally in fp64 with each row's weights
// materialized. It recomputes the softmax from q and k and never reads the
// forward's out or lse, so it is an oracle independent of what the fast
// forward stored. For tests, not for speed.
#pragma once

#include <vector>

#include "core/problem.h"

namespace salience::ref {

struct BackwardResult {
  // Over the tensors' logical shapes, row-major:
  //   dq[((b * seq_q + i) * heads_q  + h) * head_dim   + d]
  //   dk[((b * seq_k + j) * heads_kv + g) * head_dim   + d]
  //   dv[((b * seq_k + j) * heads_kv + g) * head_dim_v + c]
  // Rows and keys no valid row reaches hold 0.
  std::vector<double> dq, dk, dv;
};

// Needs a Problem from core::ValidateBackward (d_out set).
BackwardResult Backward(const core::Problem& p);

// Rounds a result to fp32 into the problem's dq, dk and dv (every element).
void StoreBackward(const core::Problem& p, const BackwardResult& result);

}  // namespace salience::ref
