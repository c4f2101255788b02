// AttentionForward on calls of decode shape (few query rows per kv head)
// runs the decode kernel: its result is bitwise the decode entry point's on
// the same tensors (a contiguous cache, options.seqlens_k as the cache's
// lengths), close to the
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
// out returned widened to fp32.
Outputs RunForward(DecodeData& data, bool reference, int threads) {
  const DecodeCase& c = data.c;
  CallTensors call(data);
  const KvCache cache = data.Cache(data.k_cache, data.v_cache);
  AttentionOptions options = c.options;
  options.num_threads = threads;
  options.seqlens_k = c.cache_lens;
  const Status status =
      reference ? AttentionForwardReference(call.q, cache.k, cache.v, call.out,
                                            options, &call.lse)
                : AttentionForward(call.q, cache.k, cache.v, call.out, options,
                                   &call.lse);
  EXPECT_TRUE(status.ok()) << status.ToString();
  Outputs result;
  result.out = Widened(call.out_elements);
  result.lse = std::move(call.lse_values);
  return result;
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
    c.q_dtype = c.out_dtype = c.dtype;  // the forward's q, k, v and out
    DecodeData data(c);
    const Outputs decode = RunDecode(data, false, 2);
    const Outputs forward = RunForward(data, false, 2);
    ExpectBitwise(forward, decode, name + ": forward against the decode call");
    ExpectClose(forward, RunForward(data, true, 1), name + ": reference",
                OutTolerance(c.out_dtype));
    ExpectBitwise(forward, RunForward(data, false, 1), name + ": 1 thread");
  }
}

}  // namespace
}  // namespace salience
