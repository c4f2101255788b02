// salience._salience.decode and merge_states: decoding against a KV cache
// (salience/decode.h) and the merge of two attention states, bound like
// forward(): DLPack arrays on the CPU, any strides, never copied, the GIL
// released while the kernel runs. q, out and the cache may each be float32,
// bfloat16 or float16; lse is float32. With k_new / v_new the new rows are
// written into the cache arrays in place.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

#include "bindings.h"

namespace salience::python {
namespace {

// The C++ messages name the KvCache fields ("cache.seqlens[1]: ..."); in
// Python they are flash_attn_with_kvcache's arguments.
Status WithPythonNames(const Status& status) {
  if (status.ok()) return status;
  static constexpr std::pair<std::string_view, std::string_view> kNames[] = {
      {"cache.k_new", "k"},
      {"cache.v_new", "v"},
      {"cache.block_table", "block_table"},
      {"cache.seqlens", "cache_seqlens"},
      {"cache.leftpad", "cache_leftpad"},
      {"cache.k", "k_cache"},
      {"cache.v", "v_cache"}};
  std::string message = status.message();
  for (const auto& [from, to] : kNames) {
    for (std::size_t at = message.find(from); at != std::string::npos;
         at = message.find(from, at + to.size())) {
      message.replace(at, from.size(), to);
    }
  }
  return Status(status.code(), message);
}

using BlockTableArray =
    nb::ndarray<const std::int32_t, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

// The caches are taken as read-only arrays so that a read-only cache can be
// read; the Python layer passes writable ones when k_new / v_new are given
// (salience._kvcache checks), which the library then writes in place.
void Decode(const InArray& q, const InArray& k_cache, const InArray& v_cache,
            const OutArray& out, const IndexArray& cache_seqlens,
            const std::optional<IndexArray>& cache_leftpad,
            const std::optional<OutArray>& lse,
            const std::optional<BlockTableArray>& block_table,
            const std::optional<InArray>& k_new,
            const std::optional<InArray>& v_new, std::optional<float> scale,
            const std::string& causal, std::int64_t window_left,
            std::int64_t window_right,
            const std::optional<SlopeArray>& alibi_slopes, float softcap,
            int num_threads, bool reference) {
  const TensorView q_view = ToView("q", q), out_view = ToView("out", out);
  KvCache cache;
  cache.k = ToView("k_cache", k_cache);
  cache.v = ToView("v_cache", v_cache);
  cache.seqlens = {cache_seqlens.data(), cache_seqlens.shape(0)};
  if (cache_leftpad) {
    cache.leftpad = {cache_leftpad->data(), cache_leftpad->shape(0)};
  }
  if (block_table) {
    cache.block_table = {block_table->data(),
                         static_cast<std::int64_t>(block_table->shape(0)),
                         static_cast<std::int64_t>(block_table->shape(1)),
                         static_cast<std::int64_t>(block_table->shape(1))};
  }
  if (k_new) cache.k_new = ToView("k", *k_new);
  if (v_new) cache.v_new = ToView("v", *v_new);
  std::optional<TensorView> lse_view;
  if (lse) lse_view = ToView("lse", *lse);
  const std::optional<InArray> no_mask;
  const std::optional<IndexArray> no_lengths;
  const AttentionOptions options =
      ToOptions({no_mask, scale, causal, window_left, window_right,
                 "bottom_right", no_lengths, no_lengths, no_lengths, no_lengths,
                 alibi_slopes, softcap, 0.0f, 0, 0, num_threads},
                q_view.shape[0]);
  const TensorView* lse_ptr = lse_view ? &*lse_view : nullptr;
  // The arrays outlive the call (this frame's arguments hold them).
  Status status;
  {
    nb::gil_scoped_release release;
    status = reference ? AttentionWithKvCacheReference(q_view, cache, out_view,
                                                       options, lse_ptr)
                       : AttentionWithKvCache(q_view, cache, out_view, options,
                                              lse_ptr);
  }
  RaiseIfError(WithPythonNames(status));
}

void MergeStates(const InArray& out_a, const InArray& lse_a,
                 const InArray& out_b, const InArray& lse_b,
                 const OutArray& out, const std::optional<OutArray>& lse) {
  const TensorView a = ToView("out_a", out_a), la = ToView("lse_a", lse_a);
  const TensorView b = ToView("out_b", out_b), lb = ToView("lse_b", lse_b);
  const TensorView merged = ToView("out", out);
  std::optional<TensorView> lse_view;
  if (lse) lse_view = ToView("lse", *lse);
  Status status;
  {
    nb::gil_scoped_release release;
    status = MergeAttentionStates(a, la, b, lb, merged,
                                  lse_view ? &*lse_view : nullptr);
  }
  RaiseIfError(status);
}

}  // namespace

void BindDecode(nb::module_& m) {
  m.def("decode", &Decode, nb::arg("q"), nb::arg("k_cache"), nb::arg("v_cache"),
        nb::arg("out"), nb::kw_only(), nb::arg("cache_seqlens"),
        nb::arg("cache_leftpad").none() = nb::none(),
        nb::arg("lse").none() = nb::none(),
        nb::arg("block_table").none() = nb::none(),
        nb::arg("k_new").none() = nb::none(),
        nb::arg("v_new").none() = nb::none(),
        nb::arg("scale").none() = nb::none(), nb::arg("causal") = "none",
        nb::arg("window_left") = -1, nb::arg("window_right") = -1,
        nb::arg("alibi_slopes").none() = nb::none(), nb::arg("softcap") = 0.0f,
        nb::arg("num_threads") = 0, nb::arg("reference") = false,
        R"doc(Attention of new queries to a KV cache, into `out` (and `lse`).

q [batch, seq_q, heads_q, head_dim]; k_cache / v_cache
[batch, capacity, heads_kv, head_dim(_v)], or with block_table (int32
[batch, max_pages]) pages [num_pages, page_size, heads_kv, head_dim(_v)];
float32, bfloat16 or float16. cache_seqlens int32 [batch]: tokens cached;
cache_leftpad int32 [batch]: the cache position of each sequence's first key
(left padding before it, never read).
k_new / v_new [batch, seqlen_new, heads_kv, head_dim(_v)] of the cache's
dtype are first written into the cache (in place) after them; attention
covers cache_seqlens + seqlen_new keys. out [batch, seq_q, heads_q,
head_dim_v]; q, out and the cache each float32, bfloat16 or float16 (read
and written as such, fp32 inside). lse [batch, heads_q, seq_q] float32.
causal is aligned to the
end of the cache. Raises ValueError for a bad argument (an out-of-range page
id included), TypeError for an unsupported dtype.)doc");
  m.def(
      "merge_states", &MergeStates, nb::arg("out_a"), nb::arg("lse_a"),
      nb::arg("out_b"), nb::arg("lse_b"), nb::arg("out"), nb::kw_only(),
      nb::arg("lse").none() = nb::none(),
      R"doc(Merges two attention states over disjoint keys into `out` (and `lse`).

out_* [batch, seq, heads, head_dim] (float32, bfloat16 or float16, each its
own; computed in float32, out rounded once) and lse_* [batch, heads, seq]
float32; a side with lse = -inf is empty and passes the other through
exactly.)doc");
}

}  // namespace salience::python
