// The fast forward kernel against the fp64 reference, on every SIMD target
// the CPU can run (the harness loops over them). Hand-written cases pin the
// reference itself to closed forms; the sweeps then vary one feature at a
// time over sizes chosen to straddle tile edges; the random battery mixes
// every feature from a fixed seed. At exit the worst errors per target are
// printed.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>
#include <random>
#include <vector>

#include "harness.h"
#include "random_case.h"
#include "salience/attention.h"

namespace salience::harness {
namespace {

class ReportWorstErrors : public ::testing::Environment {
 public:
  void TearDown() override {
    std::printf("Worst errors per target:\n%s", WorstErrorSummary().c_str());
  }
};
const ::testing::Environment* const kReport =
    ::testing::AddGlobalTestEnvironment(new ReportWorstErrors);

// --- Hand-written cases: the reference and the fast path against algebra.

// Two keys, D = 2, scale 1: q = (1, 0) scores the keys 1 and 0, so the
// weights are e / (e + 1) and 1 / (e + 1).
TEST(ForwardHandWritten, TwoKeysClosedForm) {
  Case c;
  c.batch = 1, c.seq_q = 1, c.seq_k = 2, c.heads_q = c.heads_kv = 1;
  c.head_dim = c.head_dim_v = 2;
  c.scale = 1.0f;
  CaseData data(c);
  data.q.At(0, 0, 0, 0) = 1, data.q.At(0, 0, 0, 1) = 0;
  data.k.At(0, 0, 0, 0) = 1, data.k.At(0, 0, 0, 1) = 0;
  data.k.At(0, 1, 0, 0) = 0, data.k.At(0, 1, 0, 1) = 1;
  data.v.At(0, 0, 0, 0) = 1, data.v.At(0, 0, 0, 1) = 2;
  data.v.At(0, 1, 0, 0) = 3, data.v.At(0, 1, 0, 1) = 4;
  const double e = std::exp(1.0);
  const double w0 = e / (e + 1), w1 = 1 / (e + 1);

  ref::ForwardResult ref;
  ASSERT_TRUE(RunReference(data, &ref).ok());
  EXPECT_NEAR(ref.out[0], w0 * 1 + w1 * 3, 1e-15);
  EXPECT_NEAR(ref.out[1], w0 * 2 + w1 * 4, 1e-15);
  EXPECT_NEAR(ref.lse[0], std::log(e + 1), 1e-15);
  ExpectMatchesReference(data, {.out = 1e-6, .lse = 1e-6});
}

// One visible key: its weight is exactly 1, so out is exactly that V row.
TEST(ForwardHandWritten, SingleKeyCopiesValueExactly) {
  Case c;
  c.seq_q = 5, c.seq_k = 1, c.head_dim = 64, c.head_dim_v = 40;
  CaseData data(c);
  for (const TargetRun& run : ExpectMatchesReference(data, {0.0, 1e-6})) {
    for (std::int64_t i = 0; i < c.seq_q; ++i) {
      for (std::int64_t h = 0; h < c.heads_q; ++h) {
        for (std::int64_t d = 0; d < c.head_dim_v; ++d) {
          const float out =
              run.comparison
                  .out_values[((i * c.heads_q) + h) * c.head_dim_v + d];
          ASSERT_EQ(out, data.v.At(0, 0, h, d)) << run.target_name;
        }
      }
    }
  }
}

// Identical keys: every weight is 1 / Sk, so out is the mean of V and
// lse = score + log(Sk).
TEST(ForwardHandWritten, IdenticalKeysAverageValues) {
  Case c;
  c.seq_q = 3, c.seq_k = 97, c.heads_q = c.heads_kv = 1;
  c.head_dim = c.head_dim_v = 8;
  CaseData data(c);
  for (std::int64_t j = 1; j < c.seq_k; ++j) {
    for (std::int64_t d = 0; d < c.head_dim; ++d) {
      data.k.At(0, j, 0, d) = data.k.At(0, 0, 0, d);
    }
  }
  ref::ForwardResult ref;
  ASSERT_TRUE(RunReference(data, &ref).ok());
  for (std::int64_t d = 0; d < c.head_dim_v; ++d) {
    double mean = 0;
    for (std::int64_t j = 0; j < c.seq_k; ++j) mean += data.v.At(0, j, 0, d);
    EXPECT_NEAR(ref.out[d], mean / c.seq_k, 1e-12);
  }
  ExpectMatchesReference(data);
}

// Causal top-left: row 0 sees key 0 only and copies V[0]; with ALiBi on
// q = 0, row i weighs key j by exp(-slope * (i - j)).
TEST(ForwardHandWritten, CausalAlibiGeometricWeights) {
  Case c;
  c.seq_q = c.seq_k = 4, c.heads_q = c.heads_kv = 1;
  c.head_dim = c.head_dim_v = 1;
  c.causal = Causal::kTopLeft;
  c.alibi = Alibi::kPerHead;  // one head: slope 2^(-8 (h + 1) / H) = 2^-8
  CaseData data(c);
  for (std::int64_t i = 0; i < c.seq_q; ++i) data.q.At(0, i, 0, 0) = 0;
  ref::ForwardResult ref;
  ASSERT_TRUE(RunReference(data, &ref).ok());
  const double slope = data.alibi_slopes[0];
  for (std::int64_t i = 0; i < c.seq_q; ++i) {
    double weighted = 0, total = 0;
    for (std::int64_t j = 0; j <= i; ++j) {
      const double w = std::exp(-slope * static_cast<double>(i - j));
      weighted += w * data.v.At(0, j, 0, 0);
      total += w;
    }
    EXPECT_NEAR(ref.out[i], weighted / total, 1e-12) << "row " << i;
    EXPECT_NEAR(ref.lse[i], std::log(total), 1e-12) << "row " << i;
  }
  ExpectMatchesReference(data);
}

// The public AttentionForwardReference stores ref::Forward's result rounded
// to fp32 through the strided out and lse views, padding rows included.
TEST(ForwardHandWritten, PublicReferenceStoresRoundedResult) {
  Case c;
  c.batch = 2, c.seq_q = 9, c.seq_k = 12, c.heads_q = 4, c.heads_kv = 2;
  c.head_dim = 8, c.head_dim_v = 5, c.layout = Layout::kStrided;
  c.seqlens_q = {9, 4}, c.seqlens_k = {0, 12};
  CaseData data(c);
  ref::ForwardResult ref;
  ASSERT_TRUE(RunReference(data, &ref).ok());
  ASSERT_TRUE(AttentionForwardReference(data.q.view, data.k.view, data.v.view,
                                        data.out.view, data.options,
                                        data.lse_view())
                  .ok());
  for (std::int64_t b = 0; b < c.batch; ++b) {
    for (std::int64_t i = 0; i < c.seq_q; ++i) {
      for (std::int64_t h = 0; h < c.heads_q; ++h) {
        for (std::int64_t d = 0; d < c.head_dim_v; ++d) {
          const double expected =
              ref.out[((b * c.seq_q + i) * c.heads_q + h) * c.head_dim_v + d];
          ASSERT_EQ(data.out.At(b, i, h, d), static_cast<float>(expected));
        }
        ASSERT_EQ(
            data.lse.At(b, h, i),
            static_cast<float>(ref.lse[(b * c.heads_q + h) * c.seq_q + i]));
      }
    }
  }
  EXPECT_EQ(data.lse.At(0, 0, 0), -std::numeric_limits<float>::infinity());
  EXPECT_EQ(data.lse.At(1, 0, 5), -std::numeric_limits<float>::infinity());
}

// --- Sweeps: one feature at a time, the rest plain.

TEST(ForwardSweep, SequenceLengths) {
  std::mt19937_64 rng(101);
  for (std::int64_t seq_q : kSeqLens) {
    // The diagonal pair and one uneven pair per length.
    for (std::int64_t seq_k : {seq_q, Pick(rng, kSeqLens)}) {
      Case c;
      c.seq_q = seq_q, c.seq_k = seq_k, c.head_dim = c.head_dim_v = 64;
      c.causal = Chance(rng, 0.5) ? Causal::kNone : Causal::kBottomRight;
      c.seed = rng();
      ExpectMatchesReference(c);
    }
  }
}

TEST(ForwardSweep, HeadDims) {
  std::mt19937_64 rng(102);
  for (std::int64_t head_dim : kHeadDims) {
    Case c;
    c.batch = 2, c.seq_q = 97, c.seq_k = 113;
    c.head_dim = c.head_dim_v = head_dim;
    c.seed = rng();
    ExpectMatchesReference(c);
  }
}

TEST(ForwardSweep, ValueDimDiffersFromKeyDim) {
  const std::pair<std::int64_t, std::int64_t> dims[] = {
      {64, 32}, {32, 64}, {59, 111}, {111, 59}, {1, 256}, {256, 8}, {128, 1}};
  std::uint64_t seed = 103;
  for (auto [head_dim, head_dim_v] : dims) {
    Case c;
    c.seq_q = 63, c.seq_k = 203, c.head_dim = head_dim,
    c.head_dim_v = head_dim_v;
    c.causal = Causal::kBottomRight;
    c.seed = seed++;
    ExpectMatchesReference(c);
  }
}

TEST(ForwardSweep, CausalModes) {
  const std::pair<std::int64_t, std::int64_t> sizes[] = {
      {7, 113}, {113, 7}, {63, 63},   {128, 203}, {203, 128},
      {1, 97},  {97, 1},  {256, 513}, {513, 256}};
  std::uint64_t seed = 104;
  for (Causal causal :
       {Causal::kNone, Causal::kTopLeft, Causal::kBottomRight}) {
    for (auto [seq_q, seq_k] : sizes) {
      Case c;
      c.seq_q = seq_q, c.seq_k = seq_k, c.causal = causal;
      c.head_dim = c.head_dim_v = 59;
      c.seed = seed++;
      ExpectMatchesReference(c);
    }
  }
}

TEST(ForwardSweep, SlidingWindows) {
  const std::pair<std::int64_t, std::int64_t> windows[] = {
      {0, -1}, {16, -1}, {-1, 0}, {-1, 9}, {0, 0}, {3, 5}, {64, 64}, {200, 1}};
  const std::pair<std::int64_t, std::int64_t> sizes[] = {
      {128, 128}, {97, 203}, {203, 97}};
  std::mt19937_64 rng(105);
  for (auto [left, right] : windows) {
    for (Align align : {Align::kTopLeft, Align::kBottomRight}) {
      for (auto [seq_q, seq_k] : sizes) {
        Case c;
        c.seq_q = seq_q, c.seq_k = seq_k;
        c.window_left = left, c.window_right = right, c.window_align = align;
        c.causal = Chance(rng, 0.3) ? Causal::kBottomRight : Causal::kNone;
        c.seed = rng();
        ExpectMatchesReference(c);
      }
    }
  }
}

TEST(ForwardSweep, GroupedQueryHeads) {
  const std::pair<std::int64_t, std::int64_t> heads[] = {
      {4, 4}, {4, 2}, {8, 2}, {8, 1}, {16, 2}, {5, 1}, {6, 3}};
  std::uint64_t seed = 106;
  for (auto [heads_q, heads_kv] : heads) {
    Case c;
    c.batch = 2, c.seq_q = 63, c.seq_k = 97;
    c.heads_q = heads_q, c.heads_kv = heads_kv;
    c.causal = Causal::kBottomRight;
    c.seed = seed++;
    ExpectMatchesReference(c);
  }
}

TEST(ForwardSweep, Padding) {
  const std::vector<std::int32_t> lens_q[] = {
      {97, 0, 50}, {1, 97, 96}, {0, 0, 0}};
  const std::vector<std::int32_t> lens_k[] = {
      {113, 113, 0}, {0, 57, 113}, {1, 2, 3}};
  std::uint64_t seed = 107;
  for (const auto& seqlens_q : lens_q) {
    for (const auto& seqlens_k : lens_k) {
      for (Causal causal : {Causal::kNone, Causal::kBottomRight}) {
        Case c;
        c.batch = 3, c.seq_q = 97, c.seq_k = 113;
        c.seqlens_q = seqlens_q, c.seqlens_k = seqlens_k, c.causal = causal;
        c.seed = seed++;
        ExpectMatchesReference(c);
      }
    }
  }
  Case only_k;  // padding on one side only
  only_k.batch = 2, only_k.seq_q = 64, only_k.seq_k = 130;
  only_k.seqlens_k = {129, 1};
  ExpectMatchesReference(only_k);
}

TEST(ForwardSweep, Varlen) {
  struct Packing {
    std::vector<std::int32_t> cu_q, cu_k;
    std::int64_t rows_q, rows_k;  // > the last offset: an unowned tail
  };
  const Packing packings[] = {
      {{0, 7, 7, 120}, {0, 97, 97, 200}, 120, 200},  // an empty sequence
      {{0, 63, 64, 64}, {0, 1, 129, 129}, 70, 135},
      {{0, 128}, {0, 256}, 128, 256},
      {{0, 0, 5}, {0, 3, 3}, 9, 4},  // q without keys, keys without q
  };
  std::uint64_t seed = 108;
  for (const Packing& packing : packings) {
    for (Causal causal :
         {Causal::kNone, Causal::kTopLeft, Causal::kBottomRight}) {
      Case c;
      c.cu_seqlens_q = packing.cu_q, c.cu_seqlens_k = packing.cu_k;
      c.seq_q = packing.rows_q, c.seq_k = packing.rows_k;
      c.heads_q = 4, c.heads_kv = 2, c.causal = causal;
      c.seed = seed++;
      ExpectMatchesReference(c);
    }
  }
}

TEST(ForwardSweep, Masks) {
  std::mt19937_64 rng(109);
  for (MaskKind kind : {MaskKind::kBool, MaskKind::kAdditive}) {
    for (MaskForm form : kMaskForms) {
      for (double hidden : {0.0, 0.3, 0.97}) {
        Case c;
        c.batch = 2, c.seq_q = 63, c.seq_k = 130, c.heads_q = 4, c.heads_kv = 2;
        c.mask = kind, c.mask_form = form, c.mask_hidden_share = hidden;
        c.causal = Chance(rng, 0.3) ? Causal::kTopLeft : Causal::kNone;
        if (Chance(rng, 0.3)) c.seqlens_k = {100, 130};
        c.seed = rng();
        ExpectMatchesReference(c);
      }
      Case packed;  // varlen: the mask's batch axis indexes sequences
      packed.cu_seqlens_q = {0, 40, 41, 97},
      packed.cu_seqlens_k = {0, 60, 61, 130};
      packed.seq_q = 97, packed.seq_k = 130;
      packed.mask = kind, packed.mask_form = form;
      packed.seed = rng();
      ExpectMatchesReference(packed);
    }
  }
}

TEST(ForwardSweep, AlibiAndSoftcap) {
  std::mt19937_64 rng(110);
  for (Alibi alibi : {Alibi::kNone, Alibi::kPerHead, Alibi::kPerBatch}) {
    for (float softcap : {0.0f, 0.5f, 5.0f, 50.0f}) {
      Case c;
      c.batch = 2, c.seq_q = 97, c.seq_k = 128, c.heads_q = 4, c.heads_kv = 1;
      c.alibi = alibi, c.softcap = softcap;
      c.causal = Chance(rng, 0.5) ? Causal::kBottomRight : Causal::kNone;
      c.scale = Chance(rng, 0.5) ? 0.4f : 1.0f;
      c.seed = rng();
      ExpectMatchesReference(c);
    }
  }
}

TEST(ForwardSweep, LayoutsAndThreads) {
  std::uint64_t seed = 111;
  for (Layout layout : kLayouts) {
    for (int threads : {1, 2, 3}) {
      Case c;
      c.batch = 2, c.seq_q = 113, c.seq_k = 97, c.heads_q = 4, c.heads_kv = 2;
      c.head_dim = 59, c.head_dim_v = 32, c.layout = layout;
      c.num_threads = threads, c.with_lse = threads != 2;
      c.causal = Causal::kTopLeft;
      c.seed = seed++;
      ExpectMatchesReference(c);
    }
  }
}

TEST(ForwardSweep, LargeShapes) {
  Case big;
  big.seq_q = big.seq_k = 1025, big.heads_q = big.heads_kv = 1;
  big.head_dim = big.head_dim_v = 256;
  big.causal = Causal::kBottomRight;
  ExpectMatchesReference(big);

  Case widest;  // kMaxHeadDim
  widest.seq_q = 97, widest.seq_k = 203,
  widest.head_dim = widest.head_dim_v = 512;
  widest.causal = Causal::kTopLeft, widest.layout = Layout::kStrided;
  ExpectMatchesReference(widest);

  Case grouped;
  grouped.seq_q = 513, grouped.seq_k = 1025, grouped.heads_q = 4,
  grouped.heads_kv = 1;
  grouped.head_dim = grouped.head_dim_v = 128, grouped.num_threads = 2;
  grouped.layout = Layout::kBhnd, grouped.seed = 2;
  ExpectMatchesReference(grouped);
}

// K and V beyond the kernel's 16 MiB pack budget (4096 keys at head_dim =
// head_dim_v = 512) are processed in phases; a row whose keys span phases
// carries its softmax state from one to the next. Few query rows keep the
// reference cheap.
TEST(ForwardSweep, KeysSpanningPackPhases) {
  Case plain;
  plain.seq_q = 40, plain.seq_k = 9000, plain.heads_q = 2, plain.heads_kv = 1;
  plain.head_dim = plain.head_dim_v = 512, plain.num_threads = 2;
  ExpectMatchesReference(plain);

  Case windowed = plain;  // rows see keys 5960 + i .. 8960 + i: no row
  windowed.causal = Causal::kBottomRight;  // looks into the first phase
  windowed.window_left = 3000, windowed.seed = 2;
  ExpectMatchesReference(windowed);

  Case masked = plain;  // the mask hides the first phase's keys from all
  masked.mask = MaskKind::kBool, masked.mask_form = MaskForm::kKeyPadding;
  masked.mask_hidden_share = 0.0, masked.seed = 3;
  masked.layout = Layout::kStrided;
  CaseData masked_data(masked);
  for (std::int64_t j = 0; j < 5000; ++j)
    masked_data.bool_mask.At(0, 0, 0, j) = 0;
  ExpectMatchesReference(masked_data);

  Case padded = plain;  // the second entry shares a phase with the first
  padded.batch = 2, padded.seqlens_k = {9000, 4000}, padded.seqlens_q = {40, 7};
  padded.layout = Layout::kHeadsInner, padded.seed = 4;
  ExpectMatchesReference(padded);

  Case packed;  // sequences whose keys straddle phase boundaries
  packed.cu_seqlens_q = {0, 20, 60, 61},
  packed.cu_seqlens_k = {0, 3000, 9500, 9600};
  packed.seq_q = 61, packed.seq_k = 9600, packed.heads_q = 4,
  packed.heads_kv = 2;
  packed.head_dim = 256, packed.head_dim_v = 512, packed.num_threads = 2;
  packed.mask = MaskKind::kAdditive,
  packed.mask_form = MaskForm::kSharedAcrossAll;
  packed.alibi = Alibi::kPerBatch, packed.layout = Layout::kBhnd,
  packed.seed = 5;
  ExpectMatchesReference(packed);

  Case many_pairs;  // nine (sequence, kv head) pairs split across phases
  many_pairs.batch = 3, many_pairs.seq_q = 16, many_pairs.seq_k = 2000;
  many_pairs.heads_q = 6, many_pairs.heads_kv = 3;
  many_pairs.head_dim = many_pairs.head_dim_v = 512;
  many_pairs.seqlens_k = {2000, 1500, 700}, many_pairs.num_threads = 3;
  many_pairs.causal = Causal::kBottomRight, many_pairs.seed = 6;
  ExpectMatchesReference(many_pairs);
}

// Dropout: the fast forward drops the weights core::Dropout names, as the
// reference does, and keeps lse undropped.
TEST(ForwardSweep, Dropout) {
  for (float p : {0.1f, 0.5f, 0.9f}) {
    Case c;
    c.batch = 2, c.seq_q = 150, c.seq_k = 290, c.heads_q = 4, c.heads_kv = 2;
    c.head_dim = c.head_dim_v = 64, c.causal = Causal::kBottomRight;
    c.mask = MaskKind::kBool, c.num_threads = 2;
    CaseData data(c);
    data.options.dropout_p = p;
    data.options.dropout_seed = 0x1234567890ull;
    data.options.dropout_offset = 77;
    ExpectMatchesReference(data);
  }
  Case varlen;
  varlen.batch = 3, varlen.cu_seqlens_q = {0, 40, 41, 140}, varlen.cu_seqlens_k = {0, 3, 90, 300};
  varlen.seq_q = 140, varlen.seq_k = 300, varlen.head_dim = varlen.head_dim_v = 32;
  CaseData data(varlen);
  data.options.dropout_p = 0.3f;
  data.options.dropout_offset = std::uint64_t{5} << 40;
  ExpectMatchesReference(data);
}

// --- The random battery: every feature mixed, drawn from one seed.

// Ten shards of 100 cases each, so that ctest can run them side by side.
class ForwardRandom : public ::testing::TestWithParam<int> {};

TEST_P(ForwardRandom, MixedFeatures) {
  constexpr int kCases = 100;
  constexpr double kBudget = 6e7;  // multiply-adds of the reference per case
  std::mt19937_64 rng(20240601 + GetParam());
  for (int n = 0; n < kCases; ++n) {
    const Case c = RandomCase(rng, kBudget);
    SCOPED_TRACE("shard " + std::to_string(GetParam()) + " case " +
                 std::to_string(n));
    ExpectMatchesReference(c);
  }
}

INSTANTIATE_TEST_SUITE_P(Shards, ForwardRandom, ::testing::Range(0, 10));

}  // namespace
}  // namespace salience::harness
