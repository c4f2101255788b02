// The battery `salience check` runs: representative attention problems,
// each compared with the fp64 reference on every runnable SIMD target.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "salience/attention.h"

namespace salience::tools {

enum class MaskKind : std::uint8_t {
  kNone,
  kBoolShared,    // bool [1, 1, seq_q, seq_k], broadcast; one row all false
  kBoolFull,      // bool [batch, heads_q, seq_q, seq_k]
  kAdditiveHead,  // fp32 [batch, 1, seq_q, seq_k], normal values, some -inf
};

enum class AlibiKind : std::uint8_t {
  kNone,
  kPerHead,       // heads_q slopes
  kPerBatchHead,  // batch * heads_q slopes (sequences when varlen)
};

// One problem. Inputs are random normal; K/V rows past seqlens_k and Q rows
// past seqlens_q hold NaN, which must never reach a result.
struct CheckCase {
  std::string name{};
  bool quick = false;  // part of the --quick set
  std::int64_t batch = 1, heads_q = 2, heads_kv = 2;
  std::int64_t seq_q = 0, seq_k = 0;  // varlen: set from cu_seqlens
  std::int64_t head_dim = 64, head_dim_v = 0;  // 0: head_dim
  bool bhnd = false;                           // [B,H,N,D] memory
  Causal causal = Causal::kNone;
  std::int64_t window_left = -1, window_right = -1;
  Align window_align = Align::kBottomRight;
  std::optional<float> scale{};
  float softcap = 0.0f;
  MaskKind mask = MaskKind::kNone;
  AlibiKind alibi = AlibiKind::kNone;
  std::vector<std::int32_t> seqlens_q{}, seqlens_k{};
  std::vector<std::int32_t> cu_seqlens_q{}, cu_seqlens_k{};
};

// The --quick subset, or every case.
std::vector<CheckCase> CheckCases(bool quick);

}  // namespace salience::tools
