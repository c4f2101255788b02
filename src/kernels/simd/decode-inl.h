// The decode kernel per SIMD target: one item (a sequence's split of keys,
// for the query rows of one or more kv heads) read straight from the cache.
//
// For each block of kKeyBlock keys of the split:
//   for each 4 keys j, each kv head g of the item:   K rows of (j.., g)
//     s[j][r] = (scale log2(e) q_r) . k_j          for the rows r of g
//   hide keys outside each row's range; softcap, ALiBi (core::ModifyScore)
//   m' = max(m, max_j s),  p = 2^(s - m'),  l' = l 2^(m - m') + sum_j p,
//   O *= 2^(m - m')                                 all rows at once, in lanes
//   for each kv head g, each key j:                  V row of (j, g)
//     O[r] += p[j][r] v                            for the rows r that see j
// and at the end O / l and lse = m ln 2 + log l (base-2 scores, as in the
// prefill kernel). Every cache byte is read once per item; the rows of a kv
// head's group share each key and value vector in registers; bf16/fp16
// elements are widened to fp32 as they are loaded. The products read the
// block in their own orders (4 keys by 4 rows per score tile, a head's
// output tile in registers across the block's values), from L1/L2: while a
// block is computed, a Prefetcher asks for every line of the next block in
// cache order, as many lines per step as the step reads (docs/design.md).
// The products themselves are in decode_tiles-inl.h.
#if defined(SALIENCE_KERNELS_SIMD_DECODE_INL_H_) == defined(HWY_TARGET_TOGGLE)
#ifdef SALIENCE_KERNELS_SIMD_DECODE_INL_H_
#undef SALIENCE_KERNELS_SIMD_DECODE_INL_H_
#else
#define SALIENCE_KERNELS_SIMD_DECODE_INL_H_
#endif

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <limits>

#include "core/decode_problem.h"
#include "core/half.h"
#include "hwy/highway.h"
#include "kernels/simd/decode.h"
#include "kernels/simd/decode_tiles-inl.h"
#include "kernels/simd/tiles-inl.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

// Per-thread tiles, sized for kDecodeRowBudget rows. The score tile is
// key-major, [kKeyBlock][row_stride] with the item's rows padded to whole
// vectors, so the softmax step runs across rows in the lanes and the
// scores of one key's rows are stored together.
struct DecodeScratch {
  float* q_tile;   // [rows][d_pad], queries times the score scale
  float* s_tile;   // [kKeyBlock][row_stride], scores, then weights
  float* o_tile;   // [rows][dv_pad], unnormalized output
  float* row_max;  // [rows], base 2
  float* row_sum;  // [rows]
  float* alpha;    // [rows], the block's rescale factors 2^(m - m')
  float* k_row;    // [d_pad], one widened key row
  float* v_row;    // [dv_pad], one widened value row
  // [2][kKeyBlock] each, this block's and the next one's: cache.k / cache.v
  // offsets of (key, head 0).
  std::int64_t* key_rows;
  std::int64_t* value_rows;
  core::KeyRange* ranges;  // [rows], each row's visible keys

  // Floats of the fp32 tiles (the index arrays are separate).
  static std::size_t Floats(std::size_t d_pad, std::size_t dv_pad) {
    constexpr std::size_t kRows = kDecodeRowBudget;
    return kRows * (d_pad + DecodeTraits::kKeyBlock + dv_pad + 3) + d_pad +
           dv_pad;
  }
};

// The rows of an item: heads [head_begin, head_end) x rows [row_begin,
// row_end) of each head's group, local row L = head * tile_rows + r.
struct ItemRows {
  const core::DecodeProblem* d;
  const DecodeItem* item;
  core::SeqSpan seq;
  std::int64_t tile_rows;
  std::int64_t count() const {
    return (item->head_end - item->head_begin) * tile_rows;
  }
  // Query head and query row of local row L.
  std::int64_t Head(std::int64_t local) const {
    const std::int64_t g = item->head_begin + local / tile_rows;
    const std::int64_t r = item->row_begin + local % tile_rows;
    return g * d->attn.group_size() + r % d->attn.group_size();
  }
  std::int64_t Row(std::int64_t local) const {
    return (item->row_begin + local % tile_rows) / d->attn.group_size();
  }
};

// Loads the scaled queries and each row's key range; resets the state. The
// padding rows up to whole vectors see no keys, so the softmax step can run
// on them as on any fully hidden row.
inline void BeginItem(const ItemRows& rows, float q_scale, std::size_t d_pad,
                      std::size_t dv_pad, std::size_t row_stride,
                      const DecodeScratch& sc) {
  const core::Problem& p = rows.d->attn;
  for (std::int64_t L = 0; L < static_cast<std::int64_t>(row_stride); ++L) {
    sc.row_max[L] = -std::numeric_limits<float>::infinity();
    sc.row_sum[L] = 0.0f;
    sc.ranges[L] = {0, 0};
    if (L >= rows.count()) continue;
    const std::int64_t i = rows.Row(L);
    const std::int64_t src =
        p.q.Offset(rows.seq.tensor_batch, i, rows.Head(L), 0);
    float* dst = sc.q_tile + L * d_pad;
    for (std::int64_t c = 0; c < p.head_dim; ++c) {
      dst[c] = core::LoadFloat(p.q, src + c * p.q.strides[3]) * q_scale;
    }
    std::fill(dst + p.head_dim, dst + d_pad, 0.0f);
    const core::KeyRange keys = p.Keys(rows.seq, i);
    sc.ranges[L] = {std::max(keys.begin, rows.item->key_begin),
                    std::min(keys.end, rows.item->key_end)};
    std::fill(sc.o_tile + L * dv_pad, sc.o_tile + (L + 1) * dv_pad, 0.0f);
  }
}

// Offsets of the block's keys [first, first + n) at head 0, walking the
// pages (one division per block, not per key).
inline void LocateKeys(const core::DecodeProblem& d, std::int64_t b,
                       std::int64_t first, std::size_t n,
                       std::int64_t* key_rows, std::int64_t* value_rows) {
  // No keys (the block after the last): the table may end before `first`.
  if (n == 0) return;
  const std::int64_t start = d.Start(b) + first;  // cache position
  std::int64_t page_index = start / d.page_size;
  std::int64_t slot = start % d.page_size;
  std::int64_t page = d.Page(b, start);
  for (std::size_t j = 0; j < n; ++j, ++slot) {
    if (slot == d.page_size) {
      slot = 0;
      ++page_index;
      page = d.Page(b, page_index * d.page_size);
    }
    key_rows[j] = d.cache.k.Offset(page, slot, 0, 0);
    value_rows[j] = d.cache.v.Offset(page, slot, 0, 0);
  }
}

// Hides keys outside each row's range, applies the score modifiers, and
// runs the softmax step of every row, a vector of rows at a time.
inline void BlockSoftmax(const ItemRows& rows, std::int64_t start,
                         std::size_t n, std::size_t dv_pad,
                         std::size_t row_stride, const DecodeScratch& sc) {
  const core::Problem& p = rows.d->attn;
  constexpr float kNegInf = -std::numeric_limits<float>::infinity();
  const bool mods = p.has_score_mods();
  // The padding rows after the last vector's live rows see no keys: one
  // masked store per key (the products never write them).
  const auto count = static_cast<std::size_t>(rows.count());
  if (count < row_stride) {
    const DF d;
    constexpr std::size_t N = DecodeTraits::kLanes;
    const std::size_t last = row_stride - N;
    const auto padding = hn::Not(hn::FirstN(d, count - last));
    const VF hidden = hn::Set(d, kNegInf);
    for (std::size_t j = 0; j < n; ++j) {
      hn::BlendedStore(hidden, padding, d, sc.s_tile + j * row_stride + last);
    }
  }
  for (std::size_t L = 0; L < count; ++L) {
    float* s = sc.s_tile + L;
    const core::KeyRange keys = sc.ranges[L];
    const std::int64_t lo = std::clamp<std::int64_t>(keys.begin - start, 0, n);
    const std::int64_t hi = std::clamp<std::int64_t>(keys.end - start, lo, n);
    for (std::int64_t j = 0; j < lo; ++j) s[j * row_stride] = kNegInf;
    for (std::int64_t j = hi; j < static_cast<std::int64_t>(n); ++j)
      s[j * row_stride] = kNegInf;
    if (!mods) continue;
    const std::int64_t h = rows.Head(L), i = rows.Row(L);
    for (std::int64_t j = lo; j < hi; ++j) {
      float& score = s[j * row_stride];
      score = core::ModifyScore<float>(p, rows.seq, rows.seq.tensor_batch, h, i,
                                       start + j, score) *
              kLog2e;
    }
  }
  for (std::size_t L = 0; L < row_stride; L += DecodeTraits::kLanes) {
    SoftmaxStep(sc.s_tile + L, row_stride, n, sc.row_max + L, sc.row_sum + L,
                sc.alpha + L);
  }
  for (std::int64_t L = 0; L < rows.count(); ++L) {
    if (sc.alpha[L] != 1.0f)
      ScaleRow(sc.o_tile + L * dv_pad, dv_pad, sc.alpha[L]);
  }
}

// Writes the item's rows: normalized into out/lse, or as a partial state
// ([rows][head_dim_v] outputs, then [rows] lse) for the split merge.
inline void EndItem(const ItemRows& rows, std::size_t dv_pad, float* partials,
                    const DecodeScratch& sc) {
  const core::Problem& p = rows.d->attn;
  const std::int64_t dv = p.head_dim_v, count = rows.count();
  for (std::int64_t L = 0; L < count; ++L) {
    const float sum = sc.row_sum[L];
    const float inv = sum == 0.0f ? 0.0f : 1.0f / sum;
    const float lse = sum == 0.0f ? -std::numeric_limits<float>::infinity()
                                  : sc.row_max[L] * kLn2 + std::log(sum);
    const float* acc = sc.o_tile + L * dv_pad;
    if (rows.item->partial >= 0) {
      float* dst = partials + rows.item->partial + L * dv;
      for (std::int64_t c = 0; c < dv; ++c) dst[c] = acc[c] * inv;
      partials[rows.item->partial + count * dv + L] = lse;
      continue;
    }
    const std::int64_t b = rows.seq.tensor_batch, h = rows.Head(L),
                       i = rows.Row(L);
    const std::int64_t dst = p.out.Offset(b, i, h, 0);
    for (std::int64_t c = 0; c < dv; ++c)
      core::StoreFloat(p.out, dst + c * p.out.strides[3], acc[c] * inv);
    if (p.lse != nullptr) {
      static_cast<float*>(p.lse->data)[p.lse->Offset(b, h, i)] = lse;
    }
  }
}

// What the block loop of an item reads: the cache, typed, and the tiles.
template <typename T>
struct ItemCache {
  const core::DecodeProblem* d;
  const DecodeItem* item;
  const T* k;
  const T* v;
  std::size_t depth, dv, d_pad, dv_pad, tile_rows;
  std::size_t row_stride;  // the score tile's, rows padded to whole vectors
  // Whole vectors of unit-stride elements: the register-blocked paths,
  // else a row at a time through a widened copy.
  bool keys_in_vectors, values_in_vectors;

  // The rows of kv head g's group start at this local row.
  std::size_t FirstRow(std::int64_t g) const {
    return static_cast<std::size_t>(g - item->head_begin) * tile_rows;
  }
};

// The keys of the block being computed and of the next one to read (this
// item's next block, or after its last one the first block of the item
// the thread runs next): cache.k / cache.v offsets of (key, head 0).
struct BlockKeys {
  const std::int64_t* key_rows;
  const std::int64_t* value_rows;
  std::size_t n;
  const DecodeItem* next_item;  // the item of the next block's rows
  const std::int64_t* next_key_rows;
  const std::int64_t* next_value_rows;
  std::size_t next_n;
};

// Locates the block's keys (the first block only: later ones were located
// with their predecessor) and the next block's, in the two halves of the
// offset arrays. After the item's last block the next block is the first
// of `following` (none: nullptr), so that no item starts on a block that
// nobody asked for.
inline BlockKeys LocateBlock(const core::DecodeProblem& d,
                             const DecodeItem& item, std::int64_t start,
                             const DecodeItem* following,
                             const DecodeScratch& sc) {
  constexpr std::int64_t kBlock = DecodeTraits::kKeyBlock;
  const std::size_t at = (start - item.key_begin) / kBlock % 2 * kBlock;
  const std::size_t next_at = kBlock - at;
  const auto n = static_cast<std::size_t>(
      std::min<std::int64_t>(kBlock, item.key_end - start));
  if (start == item.key_begin) {
    LocateKeys(d, d.attn.Seq(item.seq).tensor_batch, start, n, sc.key_rows + at,
               sc.value_rows + at);
  }
  const DecodeItem* next_item = &item;
  std::int64_t next_start = start + kBlock;
  if (next_start >= item.key_end && following != nullptr) {
    next_item = following;
    next_start = following->key_begin;
  }
  const auto next_n = static_cast<std::size_t>(
      std::clamp<std::int64_t>(next_item->key_end - next_start, 0, kBlock));
  LocateKeys(d, d.attn.Seq(next_item->seq).tensor_batch, next_start, next_n,
             sc.key_rows + next_at, sc.value_rows + next_at);
  return {sc.key_rows + at,      sc.value_rows + at,      n,     next_item,
          sc.key_rows + next_at, sc.value_rows + next_at, next_n};
}

// The prefetcher of the block after `keys`: its keys' K and V rows, its
// item's heads of each, as one span per row where those heads lie back to
// back.
template <typename T>
Prefetcher NextBlockPrefetcher(const ItemCache<T>& c, const BlockKeys& keys) {
  const DecodeItem& item = *keys.next_item;
  const auto heads = static_cast<std::size_t>(item.head_end - item.head_begin);
  const auto part = [&](const T* base, const TensorView& t,
                        const std::int64_t* rows, std::size_t elements) {
    const std::size_t span =
        ((elements - 1) * static_cast<std::size_t>(t.strides[3]) + 1) *
        sizeof(T);
    const bool joined = t.strides[3] == 1 &&
                        t.strides[2] == static_cast<std::int64_t>(elements);
    return Prefetcher::Part{reinterpret_cast<const char*>(base),
                            rows,
                            sizeof(T),
                            t.strides[2] * static_cast<std::int64_t>(sizeof(T)),
                            joined ? span * heads : span,
                            joined ? 1 : heads};
  };
  return Prefetcher(part(c.k, c.d->cache.k, keys.next_key_rows, c.depth),
                    part(c.v, c.d->cache.v, keys.next_value_rows, c.dv),
                    item.head_begin, keys.next_n);
}

// Whether every row sees every key of the block [start, start + n) and the
// values are whole vectors: the usual decode step, blocked.
template <typename T>
bool BlocksValues(const ItemRows& rows, const ItemCache<T>& c,
                  std::int64_t start, std::size_t n, const DecodeScratch& sc) {
  bool blocked = c.values_in_vectors;
  for (std::int64_t L = 0; L < rows.count() && blocked; ++L) {
    blocked = sc.ranges[L].begin <= start &&
              sc.ranges[L].end >= start + static_cast<std::int64_t>(n);
  }
  return blocked;
}

// The scores of every row of the item against the block's n keys: four
// keys at a time (one key at a time where rows or keys are not in whole
// vectors, or for the last keys), head by head within them, stepping
// `prefetch` as they read.
template <typename T>
void ScoreBlock(const ItemCache<T>& c, const BlockKeys& keys,
                Prefetcher& prefetch, const DecodeScratch& sc) {
  const TensorView& kt = c.d->cache.k;
  const DecodeItem& item = *c.item;
  const std::int64_t* key_rows = keys.key_rows;
  std::size_t j = 0;
#if HWY_TARGET != HWY_SCALAR
  constexpr std::size_t kQuad = 4;
  if (c.keys_in_vectors && c.tile_rows >= kQuad) {
    Prefetcher none;  // for the rows after a head's first 4
    for (; j + kQuad <= keys.n; j += kQuad) {
      float* s = sc.s_tile + j * c.row_stride;
      for (std::int64_t g = item.head_begin; g < item.head_end; ++g) {
        const std::size_t first = c.FirstRow(g);
        const T* head = c.k + g * kt.strides[2];
        const T* const quad[kQuad] = {
            head + key_rows[j], head + key_rows[j + 1], head + key_rows[j + 2],
            head + key_rows[j + 3]};
        std::size_t r = 0;
        for (; r + kQuad <= c.tile_rows; r += kQuad) {
          QkQuad(sc.q_tile + (first + r) * c.d_pad, c.d_pad, quad,
                 r == 0 ? prefetch : none, s + first + r, c.row_stride);
        }
        for (std::size_t t = 0; t < kQuad && r < c.tile_rows; ++t) {
          QkRows(sc.q_tile + (first + r) * c.d_pad, c.d_pad, c.tile_rows - r,
                 quad[t], s + t * c.row_stride + first + r);
        }
      }
    }
  }
#endif
  for (; j < keys.n; ++j) {
    float* s = sc.s_tile + j * c.row_stride;
    for (std::int64_t g = item.head_begin; g < item.head_end; ++g) {
      prefetch.Lines(LinesOf<T>(c.depth));
      const std::size_t first = c.FirstRow(g);
      const float* q = sc.q_tile + first * c.d_pad;
      const T* key = c.k + key_rows[j] + g * kt.strides[2];
      if (c.keys_in_vectors) {
        QkRows(q, c.d_pad, c.tile_rows, key, s + first);
      } else {
        QkRows(q, c.d_pad, c.tile_rows,
               RowAsF32(key, kt.strides[3], c.depth, c.d_pad, sc.k_row),
               s + first);
      }
    }
  }
}

// O += P V for the block's keys [start, start + n), stepping `prefetch` as
// it reads. A `blocked` block (every row sees every key, whole-vector
// values): head by head, each head's output tile in registers across the
// block's keys. Otherwise a key at a time, and rows that cannot see a key
// skip its value, so a NaN stored there never reaches them.
template <typename T>
void AccumulateBlock(const ItemCache<T>& c, const BlockKeys& keys,
                     std::int64_t start, bool blocked, Prefetcher& prefetch,
                     const DecodeScratch& sc) {
  const TensorView& vt = c.d->cache.v;
  const DecodeItem& item = *c.item;
  const std::int64_t* value_rows = keys.value_rows;
  const std::size_t n = keys.n;
  if (blocked) {
    for (std::int64_t g = item.head_begin; g < item.head_end; ++g) {
      const std::size_t first = c.FirstRow(g);
      PvBlock(sc.s_tile + first, c.row_stride, c.tile_rows, n,
              c.v + g * vt.strides[2], value_rows, prefetch,
              sc.o_tile + first * c.dv_pad, c.dv_pad);
    }
    return;
  }
  for (std::size_t j = 0; j < n; ++j) {
    prefetch.Lines(LinesOf<T>(c.dv) * (item.head_end - item.head_begin));
    const std::int64_t key = start + static_cast<std::int64_t>(j);
    const float* p = sc.s_tile + j * c.row_stride;
    for (std::int64_t g = item.head_begin; g < item.head_end; ++g) {
      const std::size_t first = c.FirstRow(g);
      const T* value = c.v + value_rows[j] + g * vt.strides[2];
      const float* widened = nullptr;
      for (std::size_t L = first; L < first + c.tile_rows; ++L) {
        if (key < sc.ranges[L].begin || key >= sc.ranges[L].end) continue;
        if (widened == nullptr) {
          widened = RowAsF32(value, vt.strides[3], c.dv, c.dv_pad, sc.v_row);
        }
        AddWeightedRow(sc.o_tile + L * c.dv_pad, c.dv_pad, p[L], widened);
      }
    }
  }
}

// The items of a call, each claimed once, in order, by whichever thread
// asks first.
struct ItemQueue {
  const DecodeItem* items;
  std::int64_t count;
  std::atomic<std::int64_t>* next;

  // The next unclaimed item, or nullptr when none is left.
  const DecodeItem* Claim() const {
    const std::int64_t i = next->fetch_add(1, std::memory_order_relaxed);
    return i < count ? items + i : nullptr;
  }
};

// One item: every block of its split, every kv head of it, in cache order.
// When its last block starts it claims the thread's next item from `queue`
// and asks for that item's first block, so no item starts on a block nobody
// asked for; claiming only then leaves the other items to idle threads.
// Returns the claimed item (nullptr: none left).
template <typename T>
const DecodeItem* RunDecodeItem(const core::DecodeProblem& d,
                                const DecodeItem& item, const ItemQueue& queue,
                                float* partials, const DecodeScratch& sc) {
  constexpr std::size_t N = DecodeTraits::kLanes;
  constexpr std::size_t kBlock = DecodeTraits::kKeyBlock;
  const core::Problem& p = d.attn;
  const std::size_t depth = static_cast<std::size_t>(p.head_dim);
  const std::size_t dv = static_cast<std::size_t>(p.head_dim_v);
  const ItemRows rows{&d, &item, p.Seq(item.seq),
                      item.row_end - item.row_begin};
  const std::size_t count = static_cast<std::size_t>(rows.count());
  const ItemCache<T> c{&d,
                       &item,
                       static_cast<const T*>(d.cache.k.data),
                       static_cast<const T*>(d.cache.v.data),
                       depth,
                       dv,
                       (depth + N - 1) / N * N,
                       (dv + N - 1) / N * N,
                       static_cast<std::size_t>(rows.tile_rows),
                       (count + N - 1) / N * N,
                       d.cache.k.strides[3] == 1 && depth % N == 0,
                       d.cache.v.strides[3] == 1 && dv % N == 0};
  // Without modifiers the scores go straight to base 2; with them the
  // modifiers see natural units and the factor comes after.
  const float q_scale = p.has_score_mods() ? p.scale : p.scale * kLog2e;
  BeginItem(rows, q_scale, c.d_pad, c.dv_pad, c.row_stride, sc);
  const DecodeItem* following = nullptr;
  bool claimed = false;
  for (std::int64_t start = item.key_begin; start < item.key_end;
       start += kBlock) {
    if (item.key_end - start <= static_cast<std::int64_t>(kBlock)) {
      following = queue.Claim();
      claimed = true;
    }
    const BlockKeys keys = LocateBlock(d, item, start, following, sc);
    Prefetcher prefetch = NextBlockPrefetcher(c, keys);
    ScoreBlock(c, keys, prefetch, sc);
    BlockSoftmax(rows, start, keys.n, c.dv_pad, c.row_stride, sc);
    AccumulateBlock(c, keys, start, BlocksValues(rows, c, start, keys.n, sc),
                    prefetch, sc);
  }
  EndItem(rows, c.dv_pad, partials, sc);
  return claimed ? following : queue.Claim();
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#endif  // SALIENCE_KERNELS_SIMD_DECODE_INL_H_
