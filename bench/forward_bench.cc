// Google Benchmark for the fused forward: the standard shapes (B=1, H=16,
// N in {1024, 4096}, D in {64, 128}, dense and causal) and two
// grouped-query shapes, one of them decode-like (one query row against a
// long cache). FLOPs = 2 * B * Hq * pairs * (D + Dv), pairs halved for
// causal square shapes (the convention of PEERS.md).
#include <cstdint>
#include <vector>

#include <benchmark/benchmark.h>

#include "salience/salience.h"
#include "tools/fill.h"

namespace {

using salience::AttentionForward;
using salience::AttentionOptions;
using salience::Causal;
using salience::DType;
using salience::Status;
using salience::TensorView;

// Args: heads_q, heads_kv, seq_q, seq_k, head_dim, causal (0/1).
void BM_Forward(benchmark::State& state) {
  const std::int64_t heads_q = state.range(0), heads_kv = state.range(1);
  const std::int64_t seq_q = state.range(2), seq_k = state.range(3);
  const std::int64_t head_dim = state.range(4);
  const bool causal = state.range(5) != 0;
  std::vector<float> q(seq_q * heads_q * head_dim);
  std::vector<float> k(seq_k * heads_kv * head_dim);
  std::vector<float> v(k.size()), out(q.size());
  salience::tools::FillNormal(q.data(), q.size(), 1);
  salience::tools::FillNormal(k.data(), k.size(), 2);
  salience::tools::FillNormal(v.data(), v.size(), 3);
  const auto view = [](std::vector<float>& data, std::int64_t seq,
                       std::int64_t heads, std::int64_t dim) {
    return TensorView::Bnhd(data.data(), DType::kF32, 1, seq, heads, dim);
  };
  const TensorView q_view = view(q, seq_q, heads_q, head_dim);
  const TensorView k_view = view(k, seq_k, heads_kv, head_dim);
  const TensorView v_view = view(v, seq_k, heads_kv, head_dim);
  const TensorView out_view = view(out, seq_q, heads_q, head_dim);
  AttentionOptions options;
  options.causal = causal ? Causal::kBottomRight : Causal::kNone;

  for (auto _ : state) {
    const Status status =
        AttentionForward(q_view, k_view, v_view, out_view, options);
    if (!status.ok()) {
      state.SkipWithError(status.message().c_str());
      break;
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  double pairs = static_cast<double>(seq_q) * static_cast<double>(seq_k);
  if (causal && seq_q == seq_k) pairs /= 2.0;
  const double flops = 2.0 * heads_q * pairs * (2.0 * head_dim);
  const double kv_bytes = 2.0 * sizeof(float) * k.size();
  const double iterations = static_cast<double>(state.iterations());
  state.counters["FLOPS"] =
      benchmark::Counter(flops * iterations, benchmark::Counter::kIsRate);
  state.counters["KV_read"] =
      benchmark::Counter(kv_bytes * iterations, benchmark::Counter::kIsRate);
}

void StandardShapes(benchmark::internal::Benchmark* bench) {
  for (std::int64_t n : {1024, 4096}) {
    for (std::int64_t d : {64, 128}) {
      for (std::int64_t causal : {0, 1}) bench->Args({16, 16, n, n, d, causal});
    }
  }
  bench->Args({32, 8, 2048, 2048, 128, 1});  // grouped-query, causal
  bench->Args({32, 8, 1, 32768, 128, 0});    // decode: one row, 32k cache
}

BENCHMARK(BM_Forward)
    ->ArgNames({"hq", "hkv", "nq", "nk", "d", "causal"})
    ->Apply(StandardShapes)
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
