// `salience bench`: times the fused forward on one shape from flags, or on
// a standard set, and reports GFLOP/s against this machine's measured peak.
#pragma once

#include <cstdint>
#include <string>

namespace salience::tools {

struct BenchFlags {
  // Shape; -1 means "not given" (defaults apply, or the standard set runs
  // when no shape flag is given at all).
  std::int64_t batch = -1, heads_q = -1, heads_kv = -1;
  std::int64_t seq_q = -1, seq_k = -1;
  std::int64_t head_dim = -1, head_dim_v = -1;
  std::string causal;  // none | top-left | bottom-right; empty: not given
  // Sliding window (bottom-right aligned, as flash-attn); -1: unbounded.
  std::int64_t window_left = -1, window_right = -1;
  // Give the window (and causal bound) to the kernel as a bool mask tensor
  // [1, 1, seq_q, seq_k] instead of as options: what a user of a library
  // without windows writes, and a test of mask-hidden block skipping.
  bool as_mask = false;
  // Time AttentionBackward (after one forward for out and lse) instead of
  // the forward; FLOPs count 2.5x the forward's (five products, not two).
  bool backward = false;

  std::string dtype = "f32";  // f32 | bf16 | f16
  std::string bf16_path = "auto";  // auto | dot | widen (simd::Bf16Path)
  std::string layout = "bnhd";  // bnhd (flash-attn) | bhnd (torch)
  int threads = 0;              // 0: all cores
  int repeats = 5;
  int warmup = 1;
  bool json = false;
  // Decode against a KV cache instead (bench_decode.h): GB/s of cache read.
  bool decode = false;
};

// Returns the process exit code.
int RunBench(const BenchFlags& flags);

}  // namespace salience::tools
