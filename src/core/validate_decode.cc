// Validation of the decode entry points and of MergeAttentionStates. The
// order: each tensor on its own (rank, dtype, shape, strides, overflow,
// data), then the tensors against each other, then options, then the
// lengths and the page table, which need everything before them.
#include "core/validate_decode.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>

#include "core/checks.h"
#include "core/validate.h"

namespace salience::core {
namespace {

using namespace checks;  // the shared tensor checks (core/checks.h)

constexpr StatusCode kUnsupported = StatusCode::kUnsupported;

constexpr TensorSpec kQ{"q", 4, {"batch", "seq_q", "heads_q", "head_dim"}};
constexpr TensorSpec kOut{
    "out", 4, {"batch", "seq_q", "heads_q", "head_dim_v"}};
constexpr TensorSpec kLse{"lse", 3, {"batch", "heads_q", "seq_q", ""}};
constexpr TensorSpec kKNew{
    "cache.k_new", 4, {"batch", "seqlen_new", "heads_kv", "head_dim"}};
constexpr TensorSpec kVNew{
    "cache.v_new", 4, {"batch", "seqlen_new", "heads_kv", "head_dim_v"}};
constexpr TensorSpec kKContiguous{
    "cache.k", 4, {"batch", "capacity", "heads_kv", "head_dim"}};
constexpr TensorSpec kVContiguous{
    "cache.v", 4, {"batch", "capacity", "heads_kv", "head_dim_v"}};
constexpr TensorSpec kKPaged{
    "cache.k", 4, {"num_pages", "page_size", "heads_kv", "head_dim"}};
constexpr TensorSpec kVPaged{
    "cache.v", 4, {"num_pages", "page_size", "heads_kv", "head_dim_v"}};
constexpr TensorSpec kOutA{"out_a", 4, {"batch", "seq", "heads", "head_dim"}};
constexpr TensorSpec kOutB{"out_b", 4, {"batch", "seq", "heads", "head_dim"}};
constexpr TensorSpec kMergeOut{"out", 4, {"batch", "seq", "heads", "head_dim"}};
constexpr TensorSpec kLseA{"lse_a", 3, {"batch", "heads", "seq", ""}};
constexpr TensorSpec kLseB{"lse_b", 3, {"batch", "heads", "seq", ""}};
constexpr TensorSpec kMergeLse{"lse", 3, {"batch", "heads", "seq", ""}};

// Rank, dtype (f32, or any float dtype when `any_float`: q, out and the
// cache) and the layout checks every tensor argument gets.
Status CheckTensor(const TensorSpec& spec, const TensorView& t,
                   bool any_float) {
  if (Status s = CheckRank(spec, t); !s.ok()) return s;
  const DTypes accepted = any_float ? DTypes::kFloat : DTypes::kF32;
  if (Status s = CheckDType(spec.name, t.dtype, accepted); !s.ok()) return s;
  return CheckLayout(spec, t);
}

constexpr std::int64_t kMaxDim = std::numeric_limits<std::int32_t>::max();

// The cache tensors against q and each other.
Status CheckCacheTensors(const TensorView& q, const KvCache& c, bool paged) {
  const TensorSpec& k_spec = paged ? kKPaged : kKContiguous;
  const TensorSpec& v_spec = paged ? kVPaged : kVContiguous;
  if (Status s = FirstError(
          {CheckTensor(k_spec, c.k, true), CheckTensor(v_spec, c.v, true)});
      !s.ok()) {
    return s;
  }
  if (c.v.dtype != c.k.dtype) {
    return Error(kInvalid, "cache.v.dtype: expected ", DTypeName(c.k.dtype),
                 " (cache.k.dtype), got ", DTypeName(c.v.dtype));
  }
  Status status = FirstError({
      ExpectRange(k_spec, c.k, 2, 1, kMaxDim),
      ExpectAxis(k_spec, c.k, 3, q.shape[3], "q.shape[3]"),
      ExpectRange(v_spec, c.v, 3, 1, kMaxHeadDim),
      ExpectAxis(v_spec, c.v, 0, c.k.shape[0], "cache.k.shape[0]"),
      ExpectAxis(v_spec, c.v, 1, c.k.shape[1], "cache.k.shape[1]"),
      ExpectAxis(v_spec, c.v, 2, c.k.shape[2], "cache.k.shape[2]"),
  });
  if (!status.ok()) return status;
  if (paged) {
    if (c.k.shape[1] < 1) {
      return Error(kInvalid, AxisName(k_spec, 1), ": expected >= 1, got ",
                   c.k.shape[1]);
    }
  } else if (Status s = ExpectAxis(k_spec, c.k, 0, q.shape[0], "q.shape[0]");
             !s.ok()) {
    return s;
  }
  if (q.shape[2] % c.k.shape[2] != 0) {
    return Error(
        kInvalid, "q.shape[2] (heads_q) = ", q.shape[2],
        " is not a multiple of cache.k.shape[2] (heads_kv) = ", c.k.shape[2]);
  }
  return Status::Ok();
}

// k_new / v_new: both or neither, shaped like one step of the cache.
Status CheckNewRows(const TensorView& q, const KvCache& c) {
  const bool has_k = c.k_new.data != nullptr, has_v = c.v_new.data != nullptr;
  if (has_k != has_v) {
    return Error(kInvalid, "cache.k_new / cache.v_new: expected both or ",
                 "neither, got only ", has_k ? "k_new" : "v_new");
  }
  if (!has_k) return Status::Ok();
  if (Status s = FirstError({CheckTensor(kKNew, c.k_new, true),
                             CheckTensor(kVNew, c.v_new, true)});
      !s.ok()) {
    return s;
  }
  for (const auto& [spec, t] :
       {std::pair{&kKNew, &c.k_new}, std::pair{&kVNew, &c.v_new}}) {
    if (t->dtype != c.k.dtype) {
      return Error(kInvalid, spec->name, ".dtype: expected ",
                   DTypeName(c.k.dtype), " (cache.k.dtype), got ",
                   DTypeName(t->dtype));
    }
  }
  return FirstError({
      ExpectAxis(kKNew, c.k_new, 0, q.shape[0], "q.shape[0]"),
      ExpectAxis(kKNew, c.k_new, 2, c.k.shape[2], "cache.k.shape[2]"),
      ExpectAxis(kKNew, c.k_new, 3, c.k.shape[3], "cache.k.shape[3]"),
      ExpectAxis(kVNew, c.v_new, 0, q.shape[0], "q.shape[0]"),
      ExpectAxis(kVNew, c.v_new, 1, c.k_new.shape[1], "cache.k_new.shape[1]"),
      ExpectAxis(kVNew, c.v_new, 2, c.k.shape[2], "cache.k.shape[2]"),
      ExpectAxis(kVNew, c.v_new, 3, c.v.shape[3], "cache.v.shape[3]"),
      CheckWritable(c.block_table.data ? kKPaged : kKContiguous, c.k),
      CheckWritable(c.block_table.data ? kVPaged : kVContiguous, c.v),
  });
}

Status CheckBlockTable(const BlockTable& t, std::int64_t batch) {
  if (t.rows != batch) {
    return Error(kInvalid, "cache.block_table.rows: expected ", batch,
                 " (q.shape[0], batch), got ", t.rows);
  }
  if (t.max_pages < 0) {
    return Error(kInvalid, "cache.block_table.max_pages: expected >= 0, got ",
                 t.max_pages);
  }
  if (t.rows > 1 && t.row_stride < t.max_pages) {
    return Error(kInvalid,
                 "cache.block_table.row_stride: expected >= ", t.max_pages,
                 " (max_pages), got ", t.row_stride);
  }
  return Status::Ok();
}

// What the decode path cannot honour, and the scalar options.
Status CheckOptions(const AttentionOptions& o) {
  if (o.mask.data != nullptr) {
    return Error(kUnsupported, "options.mask: a mask tensor is not supported ",
                 "by the decode path (use causal, window or ALiBi)");
  }
  if (o.dropout_p != 0.0f) {
    return Error(kUnsupported, "options.dropout_p: expected 0 for decode ",
                 "(inference), got ", o.dropout_p);
  }
  if (!o.cu_seqlens_q.empty() || !o.cu_seqlens_k.empty()) {
    return Error(kUnsupported, "options.cu_seqlens_q/cu_seqlens_k: varlen ",
                 "batches are not supported by the decode path (use a batch ",
                 "with cache.seqlens)");
  }
  if (!o.seqlens_q.empty() || !o.seqlens_k.empty()) {
    return Error(kInvalid, "options.seqlens_q/seqlens_k: expected empty for ",
                 "decode (the key lengths are cache.seqlens)");
  }
  if (o.scale.has_value() && !std::isfinite(*o.scale)) {
    return Error(kInvalid, "options.scale: expected a finite value, got ",
                 *o.scale);
  }
  if (!std::isfinite(o.softcap) || o.softcap < 0.0f) {
    return Error(kInvalid, "options.softcap: expected finite and >= 0, got ",
                 o.softcap);
  }
  if (o.num_threads < 0) {
    return Error(kInvalid, "options.num_threads: expected >= 0, got ",
                 o.num_threads);
  }
  if (static_cast<int>(o.causal) > static_cast<int>(Causal::kBottomRight)) {
    return Error(kInvalid, "options.causal: expected 0..2, got ",
                 static_cast<int>(o.causal));
  }
  if (static_cast<int>(o.window_align) >
      static_cast<int>(Align::kBottomRight)) {
    return Error(kInvalid, "options.window_align: expected 0..1, got ",
                 static_cast<int>(o.window_align));
  }
  return Status::Ok();
}

Status CheckAlibi(std::span<const float> slopes, Problem* p) {
  if (slopes.empty()) return Status::Ok();
  const std::int64_t size = static_cast<std::int64_t>(slopes.size());
  if (size == p->heads_q) {
    p->alibi_batch_stride = 0;
  } else if (size == p->num_seqs * p->heads_q) {
    p->alibi_batch_stride = p->heads_q;
  } else {
    return Error(kInvalid, "options.alibi_slopes.size(): expected ", p->heads_q,
                 " (heads_q) or ", p->num_seqs * p->heads_q,
                 " (batch * heads_q), got ", size);
  }
  for (std::size_t i = 0; i < slopes.size(); ++i) {
    if (!std::isfinite(slopes[i])) {
      return Error(kInvalid, "options.alibi_slopes[", i,
                   "]: expected a finite value, got ", slopes[i]);
    }
  }
  return Status::Ok();
}

// seqlens: one per sequence, and cached + new rows within the capacity;
// leftpad: none, or one per sequence within its cached rows. Fills the key
// counts (cached + new rows past the left padding).
Status CheckLengths(DecodeProblem* d) {
  const KvCache& c = d->cache;
  const std::int64_t batch = d->attn.num_seqs;
  if (static_cast<std::int64_t>(c.seqlens.size()) != batch) {
    return Error(kInvalid, "cache.seqlens.size(): expected ", batch,
                 " (q.shape[0], batch), got ", c.seqlens.size());
  }
  if (!c.leftpad.empty() &&
      static_cast<std::int64_t>(c.leftpad.size()) != batch) {
    return Error(kInvalid, "cache.leftpad.size(): expected 0 or ", batch,
                 " (q.shape[0], batch), got ", c.leftpad.size());
  }
  const std::int64_t capacity =
      d->paged ? c.block_table.max_pages * d->page_size : c.k.shape[1];
  const char* source = d->paged ? "block_table.max_pages * page_size"
                                : "cache.k.shape[1], capacity";
  d->k_lens.resize(static_cast<std::size_t>(batch));
  for (std::int64_t b = 0; b < batch; ++b) {
    const std::int64_t cached = c.seqlens[b];
    if (cached < 0) {
      return Error(kInvalid, "cache.seqlens[", b, "]: expected >= 0, got ",
                   cached);
    }
    const std::int64_t total = cached + d->seqlen_new;
    if (total > capacity || total > kMaxDim) {
      return Error(kOutOfRange, "cache.seqlens[", b, "] + seqlen_new: ",
                   "expected <= ", std::min(capacity, kMaxDim), " (", source,
                   "), got ", cached, " + ", d->seqlen_new, " = ", total);
    }
    const std::int64_t start = d->Start(b);
    if (start < 0 || start > cached) {
      return Error(kInvalid, "cache.leftpad[", b, "]: expected 0..", cached,
                   " (cache.seqlens[", b, "]), got ", start);
    }
    d->k_lens[b] = static_cast<std::int32_t>(total - start);
  }
  return Status::Ok();
}

// Every page a sequence reads or appends to (cache positions Start(b) ..
// Start(b) + k_lens[b] - 1) must exist.
Status CheckPageIds(const DecodeProblem& d) {
  const BlockTable& t = d.cache.block_table;
  const std::int64_t num_pages = d.cache.k.shape[0];
  for (std::int64_t b = 0; b < t.rows; ++b) {
    const std::int64_t end = d.Start(b) + d.k_lens[b];
    const std::int64_t pages = (end + d.page_size - 1) / d.page_size;
    const std::int64_t first =
        d.k_lens[b] > 0 ? d.Start(b) / d.page_size : pages;
    for (std::int64_t page = first; page < pages; ++page) {
      const std::int32_t id = t.data[b * t.row_stride + page];
      if (id < 0 || id >= num_pages) {
        return Error(kOutOfRange, "cache.block_table[", b, "][", page,
                     "]: expected a page id in [0, ", num_pages,
                     ") (cache.k.shape[0], num_pages), got ", id,
                     " (batch entry ", b, " reads pages ", first, "..",
                     pages - 1, ")");
      }
    }
  }
  return Status::Ok();
}

Status CheckOutputs(const TensorView& q, const TensorView& v,
                    const TensorView& out, const TensorView* lse) {
  Status status = FirstError({
      CheckTensor(kOut, out, true),
      ExpectAxis(kOut, out, 0, q.shape[0], "q.shape[0]"),
      ExpectAxis(kOut, out, 1, q.shape[1], "q.shape[1]"),
      ExpectAxis(kOut, out, 2, q.shape[2], "q.shape[2]"),
      ExpectAxis(kOut, out, 3, v.shape[3], "cache.v.shape[3]"),
      CheckWritable(kOut, out),
  });
  if (!status.ok() || lse == nullptr) return status;
  if (Status s = CheckTensor(kLse, *lse, false); !s.ok()) return s;
  return FirstError({
      ExpectAxis(kLse, *lse, 0, q.shape[0], "q.shape[0]"),
      ExpectAxis(kLse, *lse, 1, q.shape[2], "q.shape[2]"),
      ExpectAxis(kLse, *lse, 2, q.shape[1], "q.shape[1]"),
      CheckWritable(kLse, *lse),
  });
}

}  // namespace

Status ValidateDecode(const TensorView& q, const KvCache& cache,
                      const TensorView& out, const AttentionOptions& options,
                      const TensorView* lse, DecodeProblem* d) {
  const bool paged = cache.block_table.data != nullptr;
  if (Status s = CheckTensor(kQ, q, true); !s.ok()) return s;
  if (Status s = FirstError({ExpectRange(kQ, q, 2, 1, kMaxDim),
                             ExpectRange(kQ, q, 3, 1, kMaxHeadDim)});
      !s.ok()) {
    return s;
  }
  if (Status s = CheckCacheTensors(q, cache, paged); !s.ok()) return s;
  if (Status s = CheckNewRows(q, cache); !s.ok()) return s;
  if (Status s = CheckOutputs(q, cache.v, out, lse); !s.ok()) return s;
  if (Status s = CheckOptions(options); !s.ok()) return s;
  if (paged) {
    if (Status s = CheckBlockTable(cache.block_table, q.shape[0]); !s.ok()) {
      return s;
    }
  }

  d->cache = cache;
  d->paged = paged;
  d->page_size = cache.k.shape[1];
  d->seqlen_new = cache.k_new.data != nullptr ? cache.k_new.shape[1] : 0;
  Problem& p = d->attn;
  p.q = q;
  p.out = out;
  p.lse = lse;
  p.num_seqs = q.shape[0];
  p.heads_q = q.shape[2];
  p.heads_kv = cache.k.shape[2];
  p.head_dim = q.shape[3];
  p.head_dim_v = cache.v.shape[3];
  p.scale = options.scale.value_or(
      static_cast<float>(1.0 / std::sqrt(static_cast<double>(q.shape[3]))));
  p.num_threads = ResolveThreads(options.num_threads);
  p.max_q_len = q.shape[1];
  if (Status s = CheckAlibi(options.alibi_slopes, &p); !s.ok()) return s;
  if (Status s = CheckLengths(d); !s.ok()) return s;
  if (paged) {
    if (Status s = CheckPageIds(*d); !s.ok()) return s;
  }
  p.options = options;
  p.options.seqlens_k = d->k_lens;
  p.max_k_len = 0;
  for (std::int32_t len : d->k_lens) {
    p.max_k_len = std::max<std::int64_t>(p.max_k_len, len);
  }
  return Status::Ok();
}

Status ValidateMerge(const TensorView& out_a, const TensorView& lse_a,
                     const TensorView& out_b, const TensorView& lse_b,
                     const TensorView& out, const TensorView* lse) {
  if (Status s = FirstError(
          {CheckTensor(kOutA, out_a, true), CheckTensor(kLseA, lse_a, false),
           CheckTensor(kOutB, out_b, true), CheckTensor(kLseB, lse_b, false),
           CheckTensor(kMergeOut, out, true)});
      !s.ok()) {
    return s;
  }
  Status status = FirstError({
      ExpectAxis(kLseA, lse_a, 0, out_a.shape[0], "out_a.shape[0]"),
      ExpectAxis(kLseA, lse_a, 1, out_a.shape[2], "out_a.shape[2]"),
      ExpectAxis(kLseA, lse_a, 2, out_a.shape[1], "out_a.shape[1]"),
  });
  if (!status.ok()) return status;
  for (int axis = 0; axis < 4; ++axis) {
    const char* source[] = {"out_a.shape[0]", "out_a.shape[1]",
                            "out_a.shape[2]", "out_a.shape[3]"};
    if (Status s = FirstError(
            {ExpectAxis(kOutB, out_b, axis, out_a.shape[axis], source[axis]),
             ExpectAxis(kMergeOut, out, axis, out_a.shape[axis],
                        source[axis])});
        !s.ok()) {
      return s;
    }
  }
  for (int axis = 0; axis < 3; ++axis) {
    if (Status s =
            ExpectAxis(kLseB, lse_b, axis, lse_a.shape[axis], "lse_a's shape");
        !s.ok()) {
      return s;
    }
  }
  if (Status s = CheckWritable(kMergeOut, out); !s.ok()) return s;
  if (lse == nullptr) return Status::Ok();
  if (Status s = CheckTensor(kMergeLse, *lse, false); !s.ok()) return s;
  for (int axis = 0; axis < 3; ++axis) {
    if (Status s = ExpectAxis(kMergeLse, *lse, axis, lse_a.shape[axis],
                              "lse_a's shape");
        !s.ok()) {
      return s;
    }
  }
  return CheckWritable(kMergeLse, *lse);
}

}  // namespace salience::core
