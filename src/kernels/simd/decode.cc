// Dispatch boundary of the decode kernel: plans the items (decode.h), runs
// them on OpenMP threads with the SIMD target picked at run time, and merges
// the splits of each row set in key order.
#include "kernels/simd/decode.h"

#include <omp.h>

#include <algorithm>
#include <atomic>
#include <limits>
#include <new>
#include <vector>

#include "core/half.h"
#include "kernels/merge_states.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/simd/decode.cc"
#include "hwy/aligned_allocator.h"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/simd/decode-inl.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

Status DecodeImpl(const core::DecodeProblem& d, const DecodePlan& plan,
                  float* partials) {
  constexpr std::size_t N = DecodeTraits::kLanes;
  const std::size_t d_pad =
      (static_cast<std::size_t>(d.attn.head_dim) + N - 1) / N * N;
  const std::size_t dv_pad =
      (static_cast<std::size_t>(d.attn.head_dim_v) + N - 1) / N * N;
  const std::int64_t items = static_cast<std::int64_t>(plan.items.size());
  const int threads = static_cast<int>(std::min<std::int64_t>(
      d.attn.num_threads, std::max<std::int64_t>(items, 1)));
  bool allocated = true;
  std::atomic<std::int64_t> unclaimed{0};  // the next item to claim
#pragma omp parallel num_threads(threads)
  {
    constexpr std::size_t kRows = kDecodeRowBudget;
    constexpr std::size_t kBlock = DecodeTraits::kKeyBlock;
    hwy::AlignedFreeUniquePtr<float[]> tiles =
        hwy::AllocateAligned<float>(DecodeScratch::Floats(d_pad, dv_pad));
    hwy::AlignedFreeUniquePtr<std::int64_t[]> offsets =
        hwy::AllocateAligned<std::int64_t>(4 * kBlock);
    hwy::AlignedFreeUniquePtr<core::KeyRange[]> ranges =
        hwy::AllocateAligned<core::KeyRange>(kRows);
    if (!tiles || !offsets || !ranges) {
#pragma omp atomic write
      allocated = false;
    }
#pragma omp barrier
    if (allocated) {
      float* base = tiles.get();
      float* const k_row = base + kRows * (d_pad + kBlock + dv_pad + 3);
      const DecodeScratch sc{base,
                             base + kRows * d_pad,
                             base + kRows * (d_pad + kBlock),
                             base + kRows * (d_pad + kBlock + dv_pad),
                             base + kRows * (d_pad + kBlock + dv_pad + 1),
                             base + kRows * (d_pad + kBlock + dv_pad + 2),
                             k_row,
                             k_row + d_pad,
                             offsets.get(),
                             offsets.get() + 2 * kBlock,
                             ranges.get()};
      const ItemQueue queue{plan.items.data(), items, &unclaimed};
      for (const DecodeItem* item = queue.Claim(); item != nullptr;) {
        switch (d.cache.k.dtype) {
          case DType::kBF16:
            item =
                RunDecodeItem<hwy::bfloat16_t>(d, *item, queue, partials, sc);
            break;
          case DType::kF16:
            item = RunDecodeItem<hwy::float16_t>(d, *item, queue, partials, sc);
            break;
          default:
            item = RunDecodeItem<float>(d, *item, queue, partials, sc);
        }
      }
    }
  }
  if (!allocated) {
    return Status(StatusCode::kResourceExhausted,
                  "decode: scratch allocation failed");
  }
  return Status::Ok();
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace salience::simd {

HWY_EXPORT(DecodeImpl);

namespace {

// Whether a key's kv heads lie back to back in both K and V (flash-attn's
// [batch, seq, heads, dim] and the paged layouts), so that an item of
// several heads reads each key's row as one span.
bool HeadsAdjacent(const core::DecodeProblem& d) {
  const auto adjacent = [](const TensorView& t, std::int64_t dim) {
    return t.strides[3] == 1 && t.strides[2] == dim;
  };
  return adjacent(d.cache.k, d.attn.head_dim) &&
         adjacent(d.cache.v, d.attn.head_dim_v);
}

// The row sets of sequence b: kv heads grouped so that an item holds at
// most kDecodeRowBudget rows, and at most kHeadMajorHeads heads where a
// key's heads are not adjacent (decode.h); a head's rows beyond the budget
// are cut into tiles of that many.
void PlanSequence(const core::DecodeProblem& d, std::int64_t b,
                  bool heads_adjacent, DecodePlan* plan) {
  const core::Problem& p = d.attn;
  const core::SeqSpan seq = p.Seq(b);
  const std::int64_t group = p.group_size();
  const std::int64_t head_rows = group * seq.q_len;
  if (head_rows == 0) return;
  const std::int64_t tile_rows = std::min(head_rows, kDecodeRowBudget);
  const std::int64_t heads_per_item = std::clamp<std::int64_t>(
      kDecodeRowBudget / head_rows, 1,
      heads_adjacent ? p.heads_kv : std::min(p.heads_kv, kHeadMajorHeads));
  for (std::int64_t g = 0; g < p.heads_kv; g += heads_per_item) {
    const std::int64_t g_end = std::min(p.heads_kv, g + heads_per_item);
    for (std::int64_t row = 0; row < head_rows; row += tile_rows) {
      const std::int64_t row_end = std::min(head_rows, row + tile_rows);
      // Ranges grow with the query row, so the tile's keys are the hull of
      // its first row's start and its last row's end.
      const std::int64_t begin = p.Keys(seq, row / group).begin;
      const std::int64_t end =
          std::max(begin, p.Keys(seq, (row_end - 1) / group).end);
      const std::int64_t first_split = begin / kSplitKeys;
      const std::int64_t splits = std::max<std::int64_t>(
          1, (end + kSplitKeys - 1) / kSplitKeys - first_split);
      const std::int64_t rows = (g_end - g) * (row_end - row);
      plan->merges.push_back(
          {static_cast<std::int64_t>(plan->items.size()), splits});
      for (std::int64_t s = 0; s < splits; ++s) {
        const std::int64_t split_begin =
            std::max(begin, (first_split + s) * kSplitKeys);
        const std::int64_t split_end =
            std::min(end, (first_split + s + 1) * kSplitKeys);
        std::int64_t partial = -1;
        if (splits > 1) {
          partial = static_cast<std::int64_t>(plan->partial_floats);
          plan->partial_floats +=
              static_cast<std::size_t>(rows * (p.head_dim_v + 1));
        }
        plan->items.push_back({b, g, g_end, row, row_end, split_begin,
                               std::max(split_begin, split_end), partial});
      }
    }
  }
}

// out/lse of one row set from its splits' partial states, in split order;
// `lses` and `weights` hold room for merge.splits floats.
void MergeSplits(const core::DecodeProblem& d, const DecodePlan& plan,
                 const DecodeMerge& merge, const float* partials, float* lses,
                 float* weights) {
  const core::Problem& p = d.attn;
  const DecodeItem& head = plan.items[merge.first];
  const std::int64_t tile_rows = head.row_end - head.row_begin;
  const std::int64_t rows = (head.head_end - head.head_begin) * tile_rows;
  const std::int64_t dv = p.head_dim_v, group = p.group_size();
  const auto splits = static_cast<std::size_t>(merge.splits);
  for (std::int64_t local = 0; local < rows; ++local) {
    for (std::size_t s = 0; s < splits; ++s) {
      lses[s] =
          partials[plan.items[merge.first + s].partial + rows * dv + local];
    }
    const float lse = kernels::MergeWeights(lses, splits, weights);
    const std::int64_t r = head.row_begin + local % tile_rows;
    const std::int64_t h =
        (head.head_begin + local / tile_rows) * group + r % group;
    const std::int64_t i = r / group;
    const std::int64_t dst = p.out.Offset(head.seq, i, h, 0);
    for (std::int64_t c = 0; c < dv; ++c) {
      float sum = 0.0f;
      for (std::size_t s = 0; s < splits; ++s) {
        if (weights[s] == 0.0f) continue;  // an empty split is never read
        sum += weights[s] *
               partials[plan.items[merge.first + s].partial + local * dv + c];
      }
      core::StoreFloat(p.out, dst + c * p.out.strides[3], sum);
    }
    if (p.lse != nullptr) {
      static_cast<float*>(p.lse->data)[p.lse->Offset(head.seq, h, i)] = lse;
    }
  }
}

}  // namespace

DecodePlan PlanDecode(const core::DecodeProblem& d) {
  DecodePlan plan;
  const bool heads_adjacent = HeadsAdjacent(d);
  for (std::int64_t b = 0; b < d.attn.num_seqs; ++b)
    PlanSequence(d, b, heads_adjacent, &plan);
  return plan;
}

Status Decode(const core::DecodeProblem& d) {
  try {
    const DecodePlan plan = PlanDecode(d);
    if (plan.items.empty()) return Status::Ok();
    std::vector<float> partials(plan.partial_floats);
    Status status = HWY_DYNAMIC_DISPATCH(DecodeImpl)(d, plan, partials.data());
    if (!status.ok()) return status;
    // Serial: a merge reads rows x head_dim_v x splits floats, a sliver of
    // what the items read from the cache.
    std::int64_t max_splits = 1;
    for (const DecodeMerge& merge : plan.merges)
      max_splits = std::max(max_splits, merge.splits);
    std::vector<float> lses(max_splits), weights(max_splits);
    for (const DecodeMerge& merge : plan.merges) {
      if (merge.splits > 1) {
        MergeSplits(d, plan, merge, partials.data(), lses.data(),
                    weights.data());
      }
    }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kResourceExhausted,
                  "decode: workspace allocation failed");
  }
  return Status::Ok();
}

}  // namespace salience::simd
#endif  // HWY_ONCE
