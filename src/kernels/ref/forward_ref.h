// Reference attention forward: the textbook definition, fp64 accumulation.
// It materializes every score row, so it is for tests and `salience check`,
// not for speed.
#pragma once

#include <vector>

#include "core/problem.h"

namespace salience::ref {

struct ForwardResult {
  // out[((b * seq_q + i) * heads_q + h) * head_dim_v + c] over the tensors'
  // logical shape (b = tensor batch, i = row on the seq axis).
  std::vector<double> out;
  // lse[(b * heads_q + h) * seq_q + i]; -inf for hidden and padding rows.
  std::vector<double> lse;
};

ForwardResult Forward(const core::Problem& p);

// Rounds a result to fp32 into the problem's out (and lse, when given).
void Store(const core::Problem& p, const ForwardResult& result);

}  // namespace salience::ref
