// AttentionForward on calls of decode shape (few query rows per kv head)
// runs the decode kernel: its result is bitwise the decode entry point's on
// the same tensors (a contiguous cache, options.seqlens_k as the cache's
// lengths; for bf16/fp16, q widened and out rounded once), close to the
// forward's fp64 reference, and bitwise the same across thread counts. Keys
// past a sequence's length hold NaN.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "decode_fixture.h"
#include "kernels/simd/decode.h"
#include "kernels/simd/forward.h"
#include "salience/attention.h"
#include "salience/decode.h"

namespace salience {
namespace {

using namespace decode_testing;  // the fixture (decode_fixture.h)

// One forward call (fast or reference) over the case's cache as k and v;
// q and out in the cache's dtype, out returned widened to fp32.
Outputs RunForward(DecodeData& data, bool reference, int threads) {
  const DecodeCase& c = data.c;
  Outputs result;
  result.lse.assign(c.batch() * c.heads_q * c.seq_q, kNaN);
  Elements q_elements, out_elements;
  q_elements.Resize(c.dtype, static_cast<std::int64_t>(data.q.size()));
  for (std::size_t e = 0; e < data.q.size(); ++e) {
    q_elements.Set(static_cast<std::int64_t>(e), data.q[e]);
  }
  const std::int64_t out_count = c.batch() * c.seq_q * c.heads_q * c.head_dim_v;
  out_elements.Resize(c.dtype, out_count);
  for (std::int64_t e = 0; e < out_count; ++e) out_elements.Set(e, kNaN);
  const TensorView q = data.Attention(q_elements.data(), c.dtype, c.seq_q,
                                      c.heads_q, c.head_dim, c.strided_q);
  const TensorView out = data.Attention(out_elements.data(), c.dtype, c.seq_q,
                                        c.heads_q, c.head_dim_v, c.strided_q);
  const TensorView lse = TensorView::Contiguous(
      result.lse.data(), DType::kF32, 3, {c.batch(), c.heads_q, c.seq_q});
  const KvCache cache = data.Cache(data.k_cache, data.v_cache);
  AttentionOptions options = c.options;
  options.num_threads = threads;
  options.seqlens_k = c.cache_lens;
  const Status status =
      reference
          ? AttentionForwardReference(q, cache.k, cache.v, out, options, &lse)
          : AttentionForward(q, cache.k, cache.v, out, options, &lse);
  EXPECT_TRUE(status.ok()) << status.ToString();
  for (std::int64_t e = 0; e < out_count; ++e) {
    result.out.push_back(out_elements.Get(e));
  }
  return result;
}

float RoundTo(float x, DType dtype) {
  Elements one;
  one.Resize(dtype, 1);
  one.Set(0, x);
  return one.Get(0);
}

// The decode entry point's outputs as the forward returns them: out rounded
// to dtype.
Outputs Rounded(Outputs o, DType dtype) {
  for (float& x : o.out) x = RoundTo(x, dtype);
  return o;
}

void ExpectBitwise(const Outputs& a, const Outputs& b,
                   const std::string& what) {
  EXPECT_EQ(
      0, std::memcmp(a.out.data(), b.out.data(), a.out.size() * sizeof(float)))
      << what << ": out";
  EXPECT_EQ(
      0, std::memcmp(a.lse.data(), b.lse.data(), a.lse.size() * sizeof(float)))
      << what << ": lse";
}

TEST(DecodeRouteTest, DecodeShapedForwardRunsTheDecodeKernel) {
  static const std::vector<float> kSlopes = {0.5f,  0.25f,  0.125f, 0.0625f,
                                             0.03f, 0.015f, 0.007f, 0.003f};
  std::vector<std::pair<std::string, DecodeCase>> cases;
  auto add = [&](const std::string& name, auto edit) {
    DecodeCase c;
    c.heads_q = 8, c.heads_kv = 2;
    c.cache_lens = {0, 1, 97,
                    2 * static_cast<std::int32_t>(simd::kSplitKeys) + 33};
    edit(c);
    cases.emplace_back(name, c);
  };
  add("one query, GQA", [](DecodeCase&) {});
  add("MQA, 4 queries, causal bottom-right", [](DecodeCase& c) {
    c.heads_kv = 1, c.seq_q = 4;
    c.options.causal = Causal::kBottomRight;
  });
  add("4 queries, causal top-left", [](DecodeCase& c) {
    c.seq_q = 4;
    c.options.causal = Causal::kTopLeft;
  });
  add("window, softcap, ALiBi", [](DecodeCase& c) {
    c.seq_q = 2;
    c.options.window_left = 40;
    c.options.window_right = 0;
    c.options.softcap = 5.0f;
    c.options.alibi_slopes = kSlopes;
  });
  add("strided q and out, heads-major k and v", [](DecodeCase& c) {
    c.seq_q = 3, c.head_dim = 80, c.head_dim_v = 48;
    c.strided_q = true;
    c.heads_major_cache = true;
  });
  add("64 rows per kv head, long keys", [](DecodeCase& c) {
    c.seq_q = 16, c.head_dim = 128, c.head_dim_v = 128;
    c.cache_lens = {1500, 3000};
    c.options.causal = Causal::kBottomRight;
  });
  add("bf16, 4 queries, causal bottom-right", [](DecodeCase& c) {
    c.seq_q = 4, c.head_dim = 64, c.head_dim_v = 64;
    c.dtype = DType::kBF16;
    c.options.causal = Causal::kBottomRight;
  });
  add("fp16, strided q and out, window", [](DecodeCase& c) {
    c.dtype = DType::kF16;
    c.strided_q = true;
    c.options.window_left = 100;
  });
  for (auto& [name, c] : cases) {
    DecodeData data(c);
    // q as the forward sees it (rounded to the dtype), for the decode call.
    for (float& x : data.q) x = RoundTo(x, c.dtype);
    const Outputs decode = Rounded(RunDecode(data, false, 2), c.dtype);
    const Outputs forward = RunForward(data, false, 2);
    ExpectBitwise(forward, decode, name + ": forward against the decode call");
    // 16-bit out: within two roundings of out (this one and the
    // reference's).
    const double out_tolerance = c.dtype == DType::kBF16  ? 1.6e-2
                                 : c.dtype == DType::kF16 ? 2e-3
                                                          : 2e-5;
    ExpectClose(forward, RunForward(data, true, 1), name + ": reference",
                out_tolerance);
    ExpectBitwise(forward, RunForward(data, false, 1), name + ": 1 thread");
  }
}

}  // namespace
}  // namespace salience
