// Reference decode: attention of the new queries to a KV cache (contiguous
// or paged), fp64 accumulation, written to be read. The cache must already
// hold the appended rows (the entry point appends before calling this).
#pragma once

#include "core/decode_problem.h"
#include "kernels/ref/forward_ref.h"

namespace salience::ref {

// The result in ForwardResult's layout over q's logical shape; store it
// with ref::Store(d.attn, result).
ForwardResult Decode(const core::DecodeProblem& d);

}  // namespace salience::ref
