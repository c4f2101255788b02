#include "tools/check_cases.h"

#include <string>

namespace salience::tools {
namespace {

constexpr Causal kTopLeft = Causal::kTopLeft;
constexpr Causal kBottomRight = Causal::kBottomRight;

// Sizes sit on both sides of tile edges (1, 7, 97, 113, 1025) so partial
// tiles, single rows and single keys all appear.
std::vector<CheckCase> DenseAndCausal() {
  return {
      {.name = "dense_b2_h4_n113", .quick = true, .batch = 2, .heads_q = 4,
       .heads_kv = 4, .seq_q = 113, .seq_k = 113},
      {.name = "dense_n1", .quick = true, .seq_q = 1, .seq_k = 1},
      {.name = "dense_n7_nk1", .seq_q = 7, .seq_k = 1},
      {.name = "dense_n1_nk97", .seq_q = 1, .seq_k = 97},
      {.name = "dense_n97_nk1025_d128", .quick = true, .seq_q = 97,
       .seq_k = 1025, .head_dim = 128},
      {.name = "dense_h1_n1025", .quick = true, .heads_q = 1, .heads_kv = 1,
       .seq_q = 1025, .seq_k = 1025},
      {.name = "dense_scale0.3", .seq_q = 97, .seq_k = 97, .scale = 0.3f},
      {.name = "causal_tl_97x130", .quick = true, .seq_q = 97, .seq_k = 130,
       .causal = kTopLeft},
      {.name = "causal_br_97x130", .quick = true, .seq_q = 97, .seq_k = 130,
       .causal = kBottomRight},
      {.name = "causal_br_130x97_hidden_rows", .quick = true, .seq_q = 130,
       .seq_k = 97, .causal = kBottomRight},
      {.name = "causal_tl_130x97", .seq_q = 130, .seq_k = 97,
       .causal = kTopLeft},
      {.name = "causal_br_n1025", .seq_q = 1025, .seq_k = 1025,
       .causal = kBottomRight},
      {.name = "causal_br_h4_n2049_d128", .heads_q = 4, .heads_kv = 4,
       .seq_q = 2049, .seq_k = 2049, .head_dim = 128, .causal = kBottomRight},
      {.name = "dense_gqa_8x2_1537x2100_d96", .heads_q = 8, .heads_kv = 2,
       .seq_q = 1537, .seq_k = 2100, .head_dim = 96},
      {.name = "causal_br_n1_nk1025", .seq_q = 1, .seq_k = 1025,
       .causal = kBottomRight},
  };
}

std::vector<CheckCase> WindowsAndGroups() {
  return {
      {.name = "window_l32_r0_n257", .quick = true, .seq_q = 257,
       .seq_k = 257, .window_left = 32, .window_right = 0},
      {.name = "window_l16_r16_tl_200x257", .seq_q = 200, .seq_k = 257,
       .window_left = 16, .window_right = 16, .window_align = Align::kTopLeft},
      {.name = "window_l0_r0_n65", .seq_q = 65, .seq_k = 65,
       .window_left = 0, .window_right = 0},
      {.name = "window_r8_n97", .seq_q = 97, .seq_k = 97, .window_right = 8},
      {.name = "window_l64_causal_br_n513", .quick = true, .seq_q = 513,
       .seq_k = 513, .causal = kBottomRight, .window_left = 64},
      {.name = "gqa_8x2_causal_br_n129", .quick = true, .heads_q = 8,
       .heads_kv = 2, .seq_q = 129, .seq_k = 129, .causal = kBottomRight},
      {.name = "mqa_4x1_n97_d128", .heads_q = 4, .heads_kv = 1, .seq_q = 97,
       .seq_k = 97, .head_dim = 128},
      {.name = "decode_gqa_32x8_nk1025_d128", .quick = true, .heads_q = 32,
       .heads_kv = 8, .seq_q = 1, .seq_k = 1025, .head_dim = 128},
  };
}

std::vector<CheckCase> PaddingAndVarlen() {
  const std::vector<std::int32_t> cu_q = {0, 1, 8, 105, 218};
  const std::vector<std::int32_t> cu_k = {0, 7, 20, 133, 246};
  return {
      {.name = "padding_b3_n113", .quick = true, .batch = 3, .seq_q = 113,
       .seq_k = 113, .seqlens_q = {113, 1, 60}, .seqlens_k = {100, 7, 113}},
      {.name = "padding_causal_br_b3_n113", .batch = 3, .seq_q = 113,
       .seq_k = 113, .causal = kBottomRight, .seqlens_q = {113, 1, 60},
       .seqlens_k = {100, 7, 113}},
      {.name = "padding_kv_only_b2_n64", .batch = 2, .seq_q = 64, .seq_k = 64,
       .seqlens_q = {64, 64}, .seqlens_k = {50, 1}},
      {.name = "varlen_4seq", .quick = true, .heads_q = 4, .heads_kv = 4,
       .cu_seqlens_q = cu_q, .cu_seqlens_k = cu_k},
      {.name = "varlen_causal_br_gqa_4x2", .heads_q = 4, .heads_kv = 2,
       .causal = kBottomRight, .cu_seqlens_q = cu_q, .cu_seqlens_k = cu_k},
      {.name = "padding_zero_lengths_b3", .quick = true, .batch = 3,
       .seq_q = 64, .seq_k = 64, .causal = kBottomRight,
       .seqlens_q = {0, 50, 64}, .seqlens_k = {64, 0, 33}},
      {.name = "varlen_empty_seqs_mask", .quick = true, .heads_q = 2,
       .heads_kv = 1, .mask = MaskKind::kBoolFull,
       .cu_seqlens_q = {0, 0, 30, 97, 98},
       .cu_seqlens_k = {0, 10, 10, 120, 121}},
      {.name = "varlen_alibi_per_seq", .heads_q = 4, .heads_kv = 4,
       .alibi = AlibiKind::kPerBatchHead, .cu_seqlens_q = cu_q,
       .cu_seqlens_k = cu_k},
  };
}

std::vector<CheckCase> ScoreMods() {
  return {
      {.name = "mask_bool_shared_97x130", .quick = true, .seq_q = 97,
       .seq_k = 130, .mask = MaskKind::kBoolShared},
      {.name = "mask_bool_full_b2", .batch = 2, .seq_q = 65, .seq_k = 80,
       .mask = MaskKind::kBoolFull},
      {.name = "mask_additive_b2", .quick = true, .batch = 2, .seq_q = 97,
       .seq_k = 113, .mask = MaskKind::kAdditiveHead},
      {.name = "mask_bool_causal_window", .seq_q = 129, .seq_k = 129,
       .causal = kBottomRight, .window_left = 32,
       .mask = MaskKind::kBoolShared},
      {.name = "alibi_heads_causal_br_n129", .quick = true, .heads_q = 4,
       .heads_kv = 4, .seq_q = 129, .seq_k = 129, .causal = kBottomRight,
       .alibi = AlibiKind::kPerHead},
      {.name = "alibi_batch_heads_b2_97x150", .batch = 2, .heads_q = 4,
       .heads_kv = 4, .seq_q = 97, .seq_k = 150,
       .alibi = AlibiKind::kPerBatchHead},
      {.name = "softcap5_scale1", .quick = true, .seq_q = 97, .seq_k = 97,
       .scale = 1.0f, .softcap = 5.0f},
      {.name = "softcap30_causal_tl", .seq_q = 97, .seq_k = 97,
       .causal = kTopLeft, .softcap = 30.0f},
      {.name = "bhnd_causal_tl_n97", .quick = true, .seq_q = 97, .seq_k = 97,
       .bhnd = true, .causal = kTopLeft},
      {.name = "bhnd_gqa_padding", .batch = 2, .heads_q = 4, .heads_kv = 2,
       .seq_q = 70, .seq_k = 90, .bhnd = true, .seqlens_q = {70, 33},
       .seqlens_k = {90, 41}},
      // Everything at once: GQA, padding, Dv != D, causal, window, mask,
      // ALiBi and softcap.
      {.name = "kitchen_sink", .quick = true, .batch = 2, .heads_q = 4,
       .heads_kv = 2, .seq_q = 77, .seq_k = 150, .head_dim = 80,
       .head_dim_v = 48, .causal = kBottomRight, .window_left = 48,
       .softcap = 20.0f, .mask = MaskKind::kBoolFull,
       .alibi = AlibiKind::kPerHead, .seqlens_q = {77, 30},
       .seqlens_k = {150, 90}},
  };
}

// Head dims from 1 to the maximum, including ones that are not a multiple
// of any vector width; and value dims that differ from the key dim.
std::vector<CheckCase> HeadDims() {
  std::vector<CheckCase> cases;
  for (std::int64_t d : {1, 7, 16, 31, 33, 80, 96, 100, 127, 128, 160, 192,
                         256, 512}) {
    const bool quick = d == 1 || d == 7 || d == 96 || d == 256;
    cases.push_back({.name = "head_dim_" + std::to_string(d), .quick = quick,
                     .seq_q = 65, .seq_k = 77, .head_dim = d});
  }
  cases.push_back({.name = "d64_dv32", .quick = true, .seq_q = 97,
                   .seq_k = 97, .head_dim = 64, .head_dim_v = 32});
  cases.push_back({.name = "d32_dv128_causal_br", .seq_q = 97, .seq_k = 97,
                   .head_dim = 32, .head_dim_v = 128,
                   .causal = kBottomRight});
  cases.push_back({.name = "d1_dv256", .seq_q = 33, .seq_k = 47,
                   .head_dim = 1, .head_dim_v = 256});
  return cases;
}

}  // namespace

std::vector<CheckCase> CheckCases(bool quick) {
  std::vector<CheckCase> all;
  for (auto group : {DenseAndCausal(), WindowsAndGroups(), PaddingAndVarlen(),
                     ScoreMods(), HeadDims()}) {
    for (CheckCase& c : group) {
      if (!quick || c.quick) all.push_back(std::move(c));
    }
  }
  return all;
}

}  // namespace salience::tools
