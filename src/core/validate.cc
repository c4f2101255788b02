// Argument validation for the forward entry points. Every check runs once,
// here, before any kernel touches memory; a failure returns a Status whose
// message names the argument and the expected versus actual value.
//
// Empty problems: batch 0 or seq 0 (of q or of k) are valid; the kernel then
// writes nothing, or (seq_k 0) writes out = 0, lse = -inf for every row. A
// tensor with zero elements may therefore have data == nullptr, as an empty
// torch tensor does; any tensor that holds an element must point somewhere.
// Heads and head_dim are never 0: an empty head axis has no use and would
// make the group size heads_q / heads_kv meaningless.
#include "core/validate.h"

#include "core/checks.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <span>
#include <sstream>
#include <string>

namespace salience::core {
namespace {

using namespace checks;  // the shared tensor checks (core/checks.h)

constexpr TensorSpec kQ{"q", 4, {"batch", "seq_q", "heads_q", "head_dim"}};
constexpr TensorSpec kK{"k", 4, {"batch", "seq_k", "heads_kv", "head_dim"}};
constexpr TensorSpec kV{"v", 4, {"batch", "seq_k", "heads_kv", "head_dim_v"}};
constexpr TensorSpec kOut{
    "out", 4, {"batch", "seq_q", "heads_q", "head_dim_v"}};
constexpr TensorSpec kLse{"lse", 3, {"batch", "heads_q", "seq_q", ""}};
constexpr TensorSpec kMask{"mask", 4, {"batch", "heads_q", "seq_q", "seq_k"}};

Status CheckAttentionTensor(const TensorSpec& spec, const TensorView& t) {
  if (Status s = CheckRank(spec, t); !s.ok()) return s;
  if (Status s = CheckDType(spec.name, t.dtype, DTypes::kFloat); !s.ok()) {
    return s;
  }
  return CheckLayout(spec, t);
}

// Shapes of q, k, v and out against each other (each already well-formed).
Status CheckShapes(const TensorView& q, const TensorView& k,
                   const TensorView& v, const TensorView& out) {
  Status status = FirstError({
      ExpectRange(kQ, q, 3, 1, kMaxHeadDim),
      ExpectRange(kV, v, 3, 1, kMaxHeadDim),
      ExpectRange(kQ, q, 2, 1),
      ExpectRange(kK, k, 2, 1),
      ExpectAxis(kK, k, 0, q.shape[0], "q.shape[0]"),
      ExpectAxis(kV, v, 0, q.shape[0], "q.shape[0]"),
      ExpectAxis(kOut, out, 0, q.shape[0], "q.shape[0]"),
      ExpectAxis(kV, v, 1, k.shape[1], "k.shape[1]"),
      ExpectAxis(kV, v, 2, k.shape[2], "k.shape[2]"),
      ExpectAxis(kK, k, 3, q.shape[3], "q.shape[3]"),
      ExpectAxis(kOut, out, 1, q.shape[1], "q.shape[1]"),
      ExpectAxis(kOut, out, 2, q.shape[2], "q.shape[2]"),
      ExpectAxis(kOut, out, 3, v.shape[3], "v.shape[3]"),
  });
  if (!status.ok()) return status;
  if (q.shape[2] % k.shape[2] != 0) {
    return Error(kInvalid, "q.shape[2] (heads_q) = ", q.shape[2],
                 " is not a multiple of k.shape[2] (heads_kv) = ", k.shape[2]);
  }
  return Status::Ok();
}

Status CheckScalarOptions(const AttentionOptions& o) {
  if (o.scale.has_value() && !std::isfinite(*o.scale)) {
    return Error(kInvalid, "options.scale: expected a finite value, got ",
                 *o.scale);
  }
  if (!std::isfinite(o.softcap) || o.softcap < 0.0f) {
    return Error(kInvalid, "options.softcap: expected finite and >= 0 ",
                 "(0 disables), got ", o.softcap);
  }
  // Negated so that NaN fails too.
  if (!(o.dropout_p >= 0.0f && o.dropout_p < 1.0f)) {
    return Error(kInvalid, "options.dropout_p: expected a probability in ",
                 "[0, 1), got ", o.dropout_p);
  }
  if (o.num_threads < 0) {
    return Error(kInvalid, "options.num_threads: expected >= 0 (0 = all ",
                 "cores), got ", o.num_threads);
  }
  if (static_cast<int>(o.causal) > static_cast<int>(Causal::kBottomRight)) {
    return Error(kInvalid, "options.causal: expected kNone, kTopLeft or ",
                 "kBottomRight (0..2), got ", static_cast<int>(o.causal));
  }
  if (static_cast<int>(o.window_align) >
      static_cast<int>(Align::kBottomRight)) {
    return Error(kInvalid, "options.window_align: expected kTopLeft or ",
                 "kBottomRight (0..1), got ", static_cast<int>(o.window_align));
  }
  return Status::Ok();
}

// seqlens_q / seqlens_k: one valid length per batch entry, or empty (all
// rows valid). `extent` is the tensor's seq size, `source` names it.
Status CheckPadding(std::span<const std::int32_t> lens, const char* name,
                    std::int64_t batch, std::int64_t extent, const char* source,
                    std::int64_t* max_len) {
  *max_len = batch > 0 ? extent : 0;
  if (lens.empty()) return Status::Ok();
  if (static_cast<std::int64_t>(lens.size()) != batch) {
    return Error(kInvalid, "options.", name, ".size(): expected ", batch,
                 " (q.shape[0], batch), got ", lens.size());
  }
  *max_len = 0;
  for (std::size_t i = 0; i < lens.size(); ++i) {
    if (lens[i] < 0) {
      return Error(kInvalid, "options.", name, "[", i, "]: expected >= 0, got ",
                   lens[i]);
    }
    if (lens[i] > extent) {
      return Error(kOutOfRange, "options.", name, "[", i,
                   "]: expected <= ", extent, " (", source, "), got ", lens[i]);
    }
    *max_len = std::max<std::int64_t>(*max_len, lens[i]);
  }
  return Status::Ok();
}

// cu_seqlens_q / cu_seqlens_k: offsets starting at 0, non-decreasing, the
// last within the tensor's rows. Sets the longest sequence.
Status CheckCuSeqlens(std::span<const std::int32_t> cu, const char* name,
                      std::int64_t extent, const char* source,
                      std::int64_t* max_len) {
  if (cu[0] != 0) {
    return Error(kInvalid, "options.", name, "[0]: expected 0, got ", cu[0]);
  }
  *max_len = 0;
  for (std::size_t s = 1; s < cu.size(); ++s) {
    if (cu[s] < cu[s - 1]) {
      return Error(kInvalid, "options.", name, "[", s,
                   "]: expected >= ", cu[s - 1], " (", name, "[", s - 1,
                   "], non-decreasing), got ", cu[s]);
    }
    *max_len = std::max<std::int64_t>(*max_len, cu[s] - cu[s - 1]);
  }
  if (cu.back() > extent) {
    return Error(kOutOfRange, "options.", name, "[", cu.size() - 1,
                 "] (total rows): expected <= ", extent, " (", source,
                 "), got ", cu.back());
  }
  return Status::Ok();
}

Status CheckVarlen(const AttentionOptions& o, Problem* p) {
  const TensorView &q = p->q, &k = p->k;
  if (!o.seqlens_q.empty() || !o.seqlens_k.empty()) {
    return Error(kInvalid, "options.seqlens_q/seqlens_k (padding) cannot be ",
                 "combined with options.cu_seqlens_q/cu_seqlens_k (varlen)");
  }
  // Also catches one given without the other: they come as a pair.
  if (o.cu_seqlens_k.size() != o.cu_seqlens_q.size()) {
    return Error(kInvalid, "options.cu_seqlens_k.size(): expected ",
                 o.cu_seqlens_q.size(), " (options.cu_seqlens_q.size(), ",
                 "both or neither), got ", o.cu_seqlens_k.size());
  }
  if (o.cu_seqlens_q.size() < 2) {
    return Error(kInvalid, "options.cu_seqlens_q.size(): expected >= 2 ",
                 "(num_seqs + 1), got ", o.cu_seqlens_q.size());
  }
  if (q.shape[0] != 1) {
    return Error(kInvalid, "q.shape[0] (batch): expected 1 with cu_seqlens ",
                 "(varlen), got ", q.shape[0]);
  }
  p->varlen = true;
  p->num_seqs = static_cast<std::int64_t>(o.cu_seqlens_q.size()) - 1;
  if (Status s = CheckCuSeqlens(o.cu_seqlens_q, "cu_seqlens_q", q.shape[1],
                                "q.shape[1]", &p->max_q_len);
      !s.ok()) {
    return s;
  }
  return CheckCuSeqlens(o.cu_seqlens_k, "cu_seqlens_k", k.shape[1],
                        "k.shape[1]", &p->max_k_len);
}

// Sets how the batch splits into sequences (padding or varlen offsets) and
// the longest valid q and k lengths; p's tensors are already set.
Status CheckSequences(const AttentionOptions& o, Problem* p) {
  if (!o.cu_seqlens_q.empty() || !o.cu_seqlens_k.empty()) {
    return CheckVarlen(o, p);
  }
  const TensorView &q = p->q, &k = p->k;
  p->num_seqs = q.shape[0];
  if (Status s = CheckPadding(o.seqlens_q, "seqlens_q", q.shape[0], q.shape[1],
                              "q.shape[1]", &p->max_q_len);
      !s.ok()) {
    return s;
  }
  return CheckPadding(o.seqlens_k, "seqlens_k", q.shape[0], k.shape[1],
                      "k.shape[1]", &p->max_k_len);
}

// lse is [batch, heads_q, seq_q] over q's tensor axes (with varlen: batch 1
// and all packed rows).
Status CheckLse(const TensorView* lse, const TensorView& q) {
  if (lse == nullptr) return Status::Ok();
  if (Status s = CheckRank(kLse, *lse); !s.ok()) return s;
  if (Status s = CheckDType("lse", lse->dtype, DTypes::kF32); !s.ok()) return s;
  return FirstError({
      CheckLayout(kLse, *lse),
      ExpectAxis(kLse, *lse, 0, q.shape[0], "q.shape[0]"),
      ExpectAxis(kLse, *lse, 1, q.shape[2], "q.shape[2]"),
      ExpectAxis(kLse, *lse, 2, q.shape[1], "q.shape[1]"),
      CheckWritable(kLse, *lse),
  });
}

// One mask axis: broadcast (1) or `expected`; with varlen the seq axes only
// need to cover the longest sequence (`at_least`).
Status ExpectMaskAxis(const TensorView& mask, int axis, std::int64_t expected,
                      bool at_least, const char* source) {
  const std::int64_t size = mask.shape[axis];
  if (size == 1 || size == expected || (at_least && size > expected)) {
    return Status::Ok();
  }
  return Error(kInvalid, AxisName(kMask, axis), ": expected 1 or ",
               at_least ? ">= " : "", expected, " (", source, "), got ", size);
}

// Sets p->mask to the mask with stride 0 on its size-1 axes, so kernels
// index it with full (sequence, head, row, key) indices. Needs p's sequences.
Status CheckMask(const TensorView& mask, Problem* p) {
  if (mask.data == nullptr) return Status::Ok();
  if (Status s = CheckRank(kMask, mask); !s.ok()) return s;
  if (Status s = CheckDType("mask", mask.dtype, DTypes::kBoolOrF32); !s.ok()) return s;
  const bool v = p->varlen;
  Status status = FirstError({
      CheckLayout(kMask, mask),
      ExpectMaskAxis(mask, 0, p->num_seqs, false, "num_seqs"),
      ExpectMaskAxis(mask, 1, p->heads_q, false, "q.shape[2]"),
      ExpectMaskAxis(mask, 2, v ? p->max_q_len : p->q.shape[1], v,
                     v ? "longest cu_seqlens_q sequence" : "q.shape[1]"),
      ExpectMaskAxis(mask, 3, v ? p->max_k_len : p->k.shape[1], v,
                     v ? "longest cu_seqlens_k sequence" : "k.shape[1]"),
  });
  if (!status.ok()) return status;
  p->mask = mask;
  for (int axis = 0; axis < kMask.rank; ++axis) {
    if (mask.shape[axis] == 1) p->mask.strides[axis] = 0;
  }
  return Status::Ok();
}

// Slopes are shared across sequences (heads_q entries) or per sequence
// (num_seqs * heads_q, row-major); sets the stride between sequences.
Status CheckAlibi(std::span<const float> slopes, Problem* p) {
  if (slopes.empty()) return Status::Ok();
  const std::int64_t num_seqs = p->num_seqs, heads_q = p->heads_q;
  const std::int64_t size = static_cast<std::int64_t>(slopes.size());
  std::int64_t per_seq_size = 0;
  const bool per_seq_fits =
      !__builtin_mul_overflow(num_seqs, heads_q, &per_seq_size);
  if (size == heads_q) {
    p->alibi_batch_stride = 0;
  } else if (per_seq_fits && size == per_seq_size) {
    p->alibi_batch_stride = heads_q;
  } else {
    return Error(kInvalid, "options.alibi_slopes.size(): expected 0, ", heads_q,
                 " (heads_q) or ", num_seqs, " * ", heads_q,
                 " (num_seqs * heads_q), got ", size);
  }
  for (std::size_t i = 0; i < slopes.size(); ++i) {
    if (!std::isfinite(slopes[i])) {
      return Error(kInvalid, "options.alibi_slopes[", i,
                   "]: expected a finite value, got ", slopes[i]);
    }
  }
  return Status::Ok();
}

}  // namespace

Status ValidateForward(const TensorView& q, const TensorView& k,
                       const TensorView& v, const TensorView& out,
                       const AttentionOptions& options, const TensorView* lse,
                       Problem* problem) {
  if (Status s = FirstError(
          {CheckAttentionTensor(kQ, q), CheckAttentionTensor(kK, k),
           CheckAttentionTensor(kV, v), CheckAttentionTensor(kOut, out)});
      !s.ok()) {
    return s;
  }
  // K and V are packed side by side into one workspace: one dtype.
  if (v.dtype != k.dtype) {
    return Error(kInvalid, "v.dtype: expected ", DTypeName(k.dtype),
                 " (k.dtype), got ", DTypeName(v.dtype));
  }
  if (Status s = CheckShapes(q, k, v, out); !s.ok()) return s;
  if (Status s = CheckWritable(kOut, out); !s.ok()) return s;
  if (Status s = CheckScalarOptions(options); !s.ok()) return s;
  if (Status s = CheckLse(lse, q); !s.ok()) return s;

  // The tensors agree; resolve the rest into a Problem that the caller sees
  // only if every check passes. Sequences come first: the mask and ALiBi
  // checks read num_seqs and the longest lengths.
  Problem p;
  p.q = q;
  p.k = k;
  p.v = v;
  p.out = out;
  p.lse = lse;
  p.heads_q = q.shape[2];
  p.heads_kv = k.shape[2];
  p.head_dim = q.shape[3];
  p.head_dim_v = v.shape[3];
  // Rounded once from double so the default is the correctly rounded float.
  p.scale = options.scale.value_or(
      static_cast<float>(1.0 / std::sqrt(static_cast<double>(q.shape[3]))));
  p.options = options;
  p.num_threads = ResolveThreads(options.num_threads);
  if (Status s = CheckSequences(options, &p); !s.ok()) return s;
  if (Status s = CheckMask(options.mask, &p); !s.ok()) return s;
  if (Status s = CheckAlibi(options.alibi_slopes, &p); !s.ok()) return s;
  *problem = p;
  return Status::Ok();
}

int ResolveThreads(int requested) {
  if (requested > 0) return requested;
  return std::max(1, omp_get_max_threads());
}

}  // namespace salience::core
