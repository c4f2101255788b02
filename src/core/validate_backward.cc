// Argument validation for the backward entry points. q, k, v, out and the
// options go through ValidateForward (the forward's own checks, so the
// backward accepts exactly the calls the forward did); this file adds the
// tensors only the backward has:
//
//   d_out       [batch, seq_q, heads_q, head_dim_v]  read, like out
//   lse         [batch, heads_q, seq_q]  fp32, read (any strides, 0 too)
//   dq, dk, dv  shaped like q, k, v; written whole
//
// d_out and the gradients may each be f32, bf16 or f16 (the kernel computes
// in fp32 whatever they are).
//
// Each message names the argument and the expected versus actual value, as
// the forward's do.
#include <array>

#include "core/checks.h"
#include "core/validate.h"

namespace salience::core {
namespace {

using namespace checks;  // the shared tensor checks (core/checks.h)

// A backward tensor: its name and axes, where each expected axis size comes
// from ("q.shape[2]"), and whether the kernel writes it.
struct GradSpec {
  TensorSpec tensor;
  std::array<const char*, TensorView::kMaxRank> sources;
  bool written;
};

constexpr GradSpec kDOut{{"d_out", 4, {"batch", "seq_q", "heads_q", "head_dim_v"}},
                         {"out.shape[0]", "out.shape[1]", "out.shape[2]", "out.shape[3]"},
                         false};
constexpr GradSpec kLse{{"lse", 3, {"batch", "heads_q", "seq_q", ""}},
                        {"q.shape[0]", "q.shape[2]", "q.shape[1]", ""},
                        false};
constexpr GradSpec kDq{{"dq", 4, {"batch", "seq_q", "heads_q", "head_dim"}},
                       {"q.shape[0]", "q.shape[1]", "q.shape[2]", "q.shape[3]"},
                       true};
constexpr GradSpec kDk{{"dk", 4, {"batch", "seq_k", "heads_kv", "head_dim"}},
                       {"k.shape[0]", "k.shape[1]", "k.shape[2]", "k.shape[3]"},
                       true};
constexpr GradSpec kDv{{"dv", 4, {"batch", "seq_k", "heads_kv", "head_dim_v"}},
                       {"v.shape[0]", "v.shape[1]", "v.shape[2]", "v.shape[3]"},
                       true};

// Rank, dtype (lse f32; the others f32, bf16 or f16), each axis equal to
// `expected`'s, then the layout checks every tensor argument gets, and no
// zero stride on a written axis.
Status CheckLike(const GradSpec& spec, const TensorView& t, const TensorView& expected) {
  const TensorSpec& ts = spec.tensor;
  if (Status s = CheckRank(ts, t); !s.ok()) return s;
  const DTypes accepted = &spec == &kLse ? DTypes::kF32 : DTypes::kFloat;
  if (Status s = CheckDType(ts.name, t.dtype, accepted); !s.ok()) return s;
  for (int axis = 0; axis < ts.rank; ++axis) {
    if (Status s = ExpectAxis(ts, t, axis, expected.shape[axis], spec.sources[axis]); !s.ok()) {
      return s;
    }
  }
  if (Status s = CheckLayout(ts, t); !s.ok()) return s;
  return spec.written ? CheckWritable(ts, t) : Status::Ok();
}

}  // namespace

Status ValidateBackward(const TensorView& q, const TensorView& k,
                        const TensorView& v, const TensorView& out,
                        const TensorView& d_out, const TensorView& lse,
                        const TensorView& dq, const TensorView& dk,
                        const TensorView& dv, const AttentionOptions& options,
                        Problem* problem) {
  Problem p;
  if (Status s = ValidateForward(q, k, v, out, options, nullptr, &p); !s.ok()) {
    return s;
  }
  // lse's expected shape, from q's axes (with varlen: batch 1, packed rows).
  TensorView lse_like;
  lse_like.rank = 3;
  lse_like.shape = {q.shape[0], q.shape[2], q.shape[1], 0};
  if (Status s =
          FirstError({CheckLike(kDOut, d_out, out),
                      CheckLike(kLse, lse, lse_like), CheckLike(kDq, dq, q),
                      CheckLike(kDk, dk, k), CheckLike(kDv, dv, v)});
      !s.ok()) {
    return s;
  }
  p.lse = &lse;
  p.d_out = d_out;
  p.dq = dq;
  p.dk = dk;
  p.dv = dv;
  *problem = p;
  return Status::Ok();
}

}  // namespace salience::core
