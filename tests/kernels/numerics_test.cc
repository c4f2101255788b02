// The numerics rules of attention.h, one TEST each, on every SIMD target the
// CPU can run: masked rows, NaN isolation and propagation, overflow and
// underflow of the exponent, determinism across threads, long uniform rows
// and empty problems.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <vector>

#include "harness.h"
#include "kernels/simd/forward.h"
#include "salience/attention.h"

namespace salience::harness {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

// Sets rows [row_begin, row_end) of batch entry b, all heads and dims.
void FillRows(Buffer<float>& t, std::int64_t b, std::int64_t row_begin,
              std::int64_t row_end, float value) {
  for (std::int64_t row = row_begin; row < row_end; ++row) {
    for (std::int64_t h = 0; h < t.view.shape[2]; ++h) {
      for (std::int64_t d = 0; d < t.view.shape[3]; ++d)
        t.At(b, row, h, d) = value;
    }
  }
}

// No NaN anywhere: live rows finite, hidden rows 0 / -inf.
void ExpectNoNaN(const TargetRun& run, const Case& c) {
  for (float value : run.comparison.out_values) {
    ASSERT_TRUE(std::isfinite(value)) << run.target_name << ": " << Describe(c);
  }
  for (float value : run.comparison.lse_values) {
    ASSERT_FALSE(std::isnan(value) || value == kInf)
        << run.target_name << ": " << Describe(c);
  }
}

// Matches the reference (which checks hidden rows are exactly 0 / -inf),
// contains no NaN, and has at least `dead_rows` hidden (row, head) pairs.
void ExpectCleanWithDeadRows(CaseData& data, std::int64_t dead_rows) {
  for (const TargetRun& run : ExpectMatchesReference(data)) {
    ExpectNoNaN(run, data.spec());
    EXPECT_GE(run.comparison.dead_rows, dead_rows)
        << run.target_name << ": " << Describe(data.spec());
  }
}

// (a) A row that sees no key: out exactly 0, lse -inf, never NaN.
TEST(Numerics, FullyMaskedRowsAreZero) {
  Case causal;  // bottom-right with Sq > Sk: rows 0..4 precede every key
  causal.seq_q = 8, causal.seq_k = 3, causal.causal = Causal::kBottomRight;
  CaseData causal_data(causal);
  ExpectCleanWithDeadRows(causal_data, 5 * causal.heads_q);

  for (MaskKind kind : {MaskKind::kBool, MaskKind::kAdditive}) {
    Case masked;  // row 5 of every head hidden by the mask tensor
    masked.batch = 2, masked.seq_q = 9, masked.seq_k = 70;
    masked.mask = kind, masked.mask_hidden_share = 0.0;
    CaseData data(masked);
    for (std::int64_t b = 0; b < masked.batch; ++b) {
      for (std::int64_t h = 0; h < masked.heads_q; ++h) {
        for (std::int64_t j = 0; j < masked.seq_k; ++j) {
          if (kind == MaskKind::kBool) data.bool_mask.At(b, h, 5, j) = 0;
          if (kind == MaskKind::kAdditive)
            data.additive_mask.At(b, h, 5, j) = -kInf;
        }
      }
    }
    ExpectCleanWithDeadRows(data, masked.batch * masked.heads_q);
  }

  for (Align align : {Align::kTopLeft, Align::kBottomRight}) {
    Case window;  // (0, 0) window: bottom-right rows 0..4 and top-left
    window.seq_q = 8, window.seq_k = 3;  // rows 3..7 anchor outside the keys
    window.window_left = window.window_right = 0, window.window_align = align;
    CaseData data(window);
    ExpectCleanWithDeadRows(data, 5 * window.heads_q);
  }

  Case no_keys;  // a batch entry with seqlens_k = 0
  no_keys.batch = 2, no_keys.seq_q = 33, no_keys.seq_k = 40;
  no_keys.seqlens_k = {0, 40};
  CaseData no_keys_data(no_keys);
  ExpectCleanWithDeadRows(no_keys_data, 33 * no_keys.heads_q);

  Case phases;  // rows hidden across every pack phase (see ForwardSweep.
  phases.seq_q = 8, phases.seq_k = 9000;  // KeysSpanningPackPhases)
  phases.head_dim = phases.head_dim_v = 512,
  phases.heads_q = phases.heads_kv = 1;
  phases.mask = MaskKind::kBool, phases.mask_form = MaskForm::kQueryRows;
  phases.mask_hidden_share = 0.0;
  CaseData phases_data(phases);
  phases_data.bool_mask.At(0, 0, 2, 0) = 0;
  phases_data.bool_mask.At(0, 0, 5, 0) = 0;
  ExpectCleanWithDeadRows(phases_data, 2);
}

// (b) NaN stored where no live row may look never reaches the output.
TEST(Numerics, HiddenNaNNeverReachesLiveRows) {
  Case padded;  // past seqlens_q in Q, past seqlens_k in K and V
  padded.batch = 2, padded.seq_q = 97, padded.seq_k = 113;
  padded.seqlens_q = {50, 97}, padded.seqlens_k = {60, 1};
  padded.causal = Causal::kBottomRight;
  CaseData padded_data(padded);
  for (std::int64_t b = 0; b < padded.batch; ++b) {
    FillRows(padded_data.q, b, padded.seqlens_q[b], padded.seq_q, kNaN);
    FillRows(padded_data.k, b, padded.seqlens_k[b], padded.seq_k, kNaN);
    FillRows(padded_data.v, b, padded.seqlens_k[b], padded.seq_k, kNaN);
  }
  ExpectCleanWithDeadRows(padded_data, 47 * padded.heads_q);

  Case causal;  // top-left with Sq < Sk: keys 64.. are after every row
  causal.seq_q = 64, causal.seq_k = 200, causal.causal = Causal::kTopLeft;
  CaseData causal_data(causal);
  FillRows(causal_data.k, 0, 64, 200, kNaN);
  FillRows(causal_data.v, 0, 64, 200, kNaN);
  ExpectCleanWithDeadRows(causal_data, 0);

  Case window;  // bottom-right (4, 0): row i sees keys 180 + i .. 184 + i
  window.seq_q = 16, window.seq_k = 200;
  window.window_left = 4, window.window_right = 0;
  CaseData window_data(window);
  FillRows(window_data.k, 0, 0, 180, kNaN);
  FillRows(window_data.v, 0, 0, 180, kNaN);
  ExpectCleanWithDeadRows(window_data, 0);

  for (MaskKind kind : {MaskKind::kBool, MaskKind::kAdditive}) {
    Case masked;  // every third key hidden by a key-padding mask
    masked.batch = 2, masked.seq_q = 40, masked.seq_k = 150;
    masked.mask = kind, masked.mask_form = MaskForm::kKeyPadding;
    masked.mask_hidden_share = 0.0;
    CaseData data(masked);
    for (std::int64_t b = 0; b < masked.batch; ++b) {
      for (std::int64_t j = 0; j < masked.seq_k; j += 3) {
        if (kind == MaskKind::kBool) data.bool_mask.At(b, 0, 0, j) = 0;
        if (kind == MaskKind::kAdditive)
          data.additive_mask.At(b, 0, 0, j) = -kInf;
        FillRows(data.k, b, j, j + 1, kNaN);
        FillRows(data.v, b, j, j + 1, kNaN);
      }
    }
    ExpectCleanWithDeadRows(data, 0);
  }

  Case packed;  // varlen: rows after the last sequence belong to no one
  packed.cu_seqlens_q = {0, 30, 30, 77}, packed.cu_seqlens_k = {0, 64, 65, 129};
  packed.seq_q = 90, packed.seq_k = 140;
  CaseData packed_data(packed);
  FillRows(packed_data.q, 0, 77, 90, kNaN);
  FillRows(packed_data.k, 0, 129, 140, kNaN);
  FillRows(packed_data.v, 0, 129, 140, kNaN);
  ExpectCleanWithDeadRows(packed_data, 13 * packed.heads_q);

  Case phases;  // keys 5000.. of a problem spanning three pack phases
  phases.seq_q = 8, phases.seq_k = 9000, phases.seqlens_k = {5000};
  phases.head_dim = phases.head_dim_v = 512,
  phases.heads_q = phases.heads_kv = 1;
  phases.window_left = 100;  // bottom-right: row i sees 4892 + i .. 4999
  CaseData phases_data(phases);
  FillRows(phases_data.k, 0, 0, 4892, kNaN);
  FillRows(phases_data.v, 0, 0, 4892, kNaN);
  FillRows(phases_data.k, 0, 5000, 9000, kNaN);
  FillRows(phases_data.v, 0, 5000, 9000, kNaN);
  ExpectCleanWithDeadRows(phases_data, 0);
}

// (c) NaN in a live K or V value reaches exactly the rows that see it: a K
// element poisons the score (the whole row and its lse), a V element only
// its own output column.
TEST(Numerics, LiveNaNPropagates) {
  constexpr std::int64_t kPoisonedKey = 20, kPoisonedColumn = 5;
  for (bool poison_key : {true, false}) {
    Case c;
    c.seq_q = c.seq_k = 64, c.heads_q = 2, c.heads_kv = 1;
    c.causal = Causal::kTopLeft;
    CaseData data(c);
    (poison_key ? data.k : data.v).At(0, kPoisonedKey, 0, kPoisonedColumn) =
        kNaN;
    for (const TargetRun& run : ExpectMatchesReference(data)) {
      const Comparison& result = run.comparison;
      for (std::int64_t i = 0; i < c.seq_q; ++i) {
        for (std::int64_t h = 0; h < c.heads_q; ++h) {
          const bool sees = i >= kPoisonedKey;
          for (std::int64_t d = 0; d < c.head_dim_v; ++d) {
            const float out =
                result.out_values[(i * c.heads_q + h) * c.head_dim_v + d];
            const bool poisoned = sees && (poison_key || d == kPoisonedColumn);
            ASSERT_EQ(std::isnan(out), poisoned)
                << run.target_name << " row " << i << " head " << h << " d "
                << d;
          }
          const float lse = result.lse_values[h * c.seq_q + i];
          ASSERT_EQ(std::isnan(lse), sees && poison_key)
              << run.target_name << " row " << i << " head " << h;
        }
      }
    }
  }
}

// (c) continued: a key the row sees stays seen when its fp32 weight
// underflows to exactly 0 (score -400 below the others): IEEE gives
// 0 * NaN = NaN, and so does the reference, whatever the key block's shape
// (partial tail block or whole) or the presence of a mask tensor.
TEST(Numerics, LiveNaNValuePropagatesAtZeroWeight) {
  constexpr std::int64_t kFarKey = 10, kPoisonedColumn = 3;
  for (std::int64_t seq_k : {50, 128}) {
    for (bool with_mask : {false, true}) {
      Case c;
      c.seq_q = 4, c.seq_k = seq_k, c.head_dim = c.head_dim_v = 16;
      c.heads_q = c.heads_kv = 1;
      if (with_mask) c.mask = MaskKind::kBool, c.mask_hidden_share = 0.0;
      CaseData data(c);
      FillRows(data.q, 0, 0, c.seq_q, 1.0f);
      FillRows(data.k, 0, kFarKey, kFarKey + 1, -100.0f);
      data.v.At(0, kFarKey, 0, kPoisonedColumn) = kNaN;
      for (const TargetRun& run : ExpectMatchesReference(data)) {
        for (std::int64_t i = 0; i < c.seq_q; ++i) {
          const float out =
              run.comparison.out_values[i * c.head_dim_v + kPoisonedColumn];
          EXPECT_TRUE(std::isnan(out)) << run.target_name << " row " << i
                                       << " = " << out << ": " << Describe(c);
        }
      }
    }
  }
}

// (d) Scores near 1e7: the softmax is a near one-hot, and the running max
// keeps every exponent <= 0, so nothing overflows.
TEST(Numerics, HugeLogitsDoNotOverflow) {
  for (Causal causal : {Causal::kNone, Causal::kBottomRight}) {
    Case c;
    c.seq_q = 97, c.seq_k = 130, c.head_dim = c.head_dim_v = 64;
    c.causal = causal;
    c.distribution = Distribution::kUniform, c.value_scale = 1e3f;
    CaseData data(c);
    for (const TargetRun& run : ExpectMatchesReference(data)) {
      ExpectNoNaN(run, c);
      // The score-magnitude allowance is huge here; the gaps between the
      // top scores are too, so the result must be the one-hot exactly.
      EXPECT_LE(run.comparison.out_error, 2e-5) << run.target_name;
    }
  }
}

// (e) exp of a very negative argument is exactly 0: a key far below the row
// maximum contributes exactly nothing, even with a huge V. Bitwise the same
// as hiding that key.
TEST(Numerics, FarBelowMaxKeyWeighsExactlyZero) {
  constexpr std::int64_t kFarKey = 40;
  auto make = [](float far_key_mask) {
    Case c;
    c.seq_q = 9, c.seq_k = 97, c.mask = MaskKind::kAdditive;
    c.mask_form = MaskForm::kSharedAcrossAll, c.mask_hidden_share = 0.0;
    auto data = std::make_unique<CaseData>(c);
    for (std::int64_t i = 0; i < c.seq_q; ++i) {
      for (std::int64_t j = 0; j < c.seq_k; ++j) {
        data->additive_mask.At(0, 0, i, j) = j == kFarKey ? far_key_mask : 0.0f;
      }
    }
    FillRows(data->v, 0, kFarKey, kFarKey + 1, 1e30f);
    return data;
  };
  std::unique_ptr<CaseData> far = make(-1e4f), hidden = make(-kInf);
  const std::vector<TargetRun> far_runs = ExpectMatchesReference(*far);
  const std::vector<TargetRun> hidden_runs = ExpectMatchesReference(*hidden);
  ASSERT_EQ(far_runs.size(), hidden_runs.size());
  for (std::size_t t = 0; t < far_runs.size(); ++t) {
    const Comparison &a = far_runs[t].comparison,
                     &b = hidden_runs[t].comparison;
    ASSERT_EQ(a.out_values.size(), b.out_values.size());
    EXPECT_EQ(0, std::memcmp(a.out_values.data(), b.out_values.data(),
                             a.out_values.size() * sizeof(float)))
        << far_runs[t].target_name << ": out differs from the key hidden";
    EXPECT_EQ(0, std::memcmp(a.lse_values.data(), b.lse_values.data(),
                             a.lse_values.size() * sizeof(float)))
        << far_runs[t].target_name << ": lse differs from the key hidden";
  }

  // The same through the score itself: q = 1, k = -100 gives -400 at D 16.
  Case c;
  c.seq_q = 9, c.seq_k = 97, c.head_dim = c.head_dim_v = 16;
  CaseData data(c);
  FillRows(data.q, 0, 0, c.seq_q, 1.0f);
  FillRows(data.k, 0, kFarKey, kFarKey + 1, -100.0f);
  FillRows(data.v, 0, kFarKey, kFarKey + 1, 1e30f);
  for (const TargetRun& run : ExpectMatchesReference(data)) ExpectNoNaN(run, c);
}

// (f) Bitwise identical results across repeated runs and thread counts.
TEST(Numerics, BitwiseDeterministicAcrossThreads) {
  Case dense;
  dense.batch = 2, dense.seq_q = 203, dense.seq_k = 257, dense.heads_q = 4;
  dense.heads_kv = 2, dense.causal = Causal::kBottomRight;
  dense.mask = MaskKind::kAdditive, dense.alibi = Alibi::kPerHead;
  Case packed;
  packed.cu_seqlens_q = {0, 100, 101, 300},
  packed.cu_seqlens_k = {0, 64, 300, 513};
  packed.seq_q = 300, packed.seq_k = 513, packed.heads_q = 8,
  packed.heads_kv = 1;
  packed.window_left = 100, packed.head_dim = packed.head_dim_v = 59;
  Case phases;  // two pack phases: state carried between them
  phases.seq_q = 20, phases.seq_k = 4200, phases.heads_q = 2,
  phases.heads_kv = 1;
  phases.head_dim = phases.head_dim_v = 512;

  for (const Case& c : {dense, packed, phases}) {
    CaseData data(c);
    ref::ForwardResult ref;
    ASSERT_TRUE(RunReference(data, &ref).ok());
    for (std::int64_t target : simd::RunnableTargets()) {
      simd::ScopedTarget only(target);
      data.options.num_threads = 1;
      const Comparison first = RunFastAndCompare(data, ref);
      ASSERT_TRUE(first.status.ok()) << first.status.ToString();
      for (int threads : {1, 2, 3, 4, 1, 2, 3, 4}) {
        data.options.num_threads = threads;
        const Comparison again = RunFastAndCompare(data, ref);
        ASSERT_TRUE(again.status.ok()) << again.status.ToString();
        EXPECT_EQ(0,
                  std::memcmp(first.out_values.data(), again.out_values.data(),
                              first.out_values.size() * sizeof(float)))
            << simd::TargetName(target) << " threads " << threads << ": "
            << Describe(c);
        EXPECT_EQ(0,
                  std::memcmp(first.lse_values.data(), again.lse_values.data(),
                              first.lse_values.size() * sizeof(float)))
            << simd::TargetName(target) << " threads " << threads << ": "
            << Describe(c);
      }
    }
  }
}

// (g) Q = K = 0: every score is 0 and every weight 1 / Sk, so out is the
// mean of V and lse = log(Sk), even over 4097 keys.
TEST(Numerics, ZeroScoresAverageLongSequence) {
  Case c;
  c.seq_q = 5, c.seq_k = 4097, c.head_dim = c.head_dim_v = 64;
  c.distribution = Distribution::kUniform;
  CaseData data(c);
  FillRows(data.q, 0, 0, c.seq_q, 0.0f);
  FillRows(data.k, 0, 0, c.seq_k, 0.0f);
  for (const TargetRun& run : ExpectMatchesReference(data, {1e-5, 1e-6})) {
    for (std::int64_t h = 0; h < c.heads_q; ++h) {
      for (std::int64_t d = 0; d < c.head_dim_v; ++d) {
        double mean = 0.0;
        for (std::int64_t j = 0; j < c.seq_k; ++j)
          mean += data.v.At(0, j, h, d);
        mean /= static_cast<double>(c.seq_k);
        for (std::int64_t i = 0; i < c.seq_q; ++i) {
          const float out =
              run.comparison.out_values[(i * c.heads_q + h) * c.head_dim_v + d];
          // V is uniform in [-1, 1]: 1e-6 is 8 ulps of its largest values
          // (measured: 3e-8).
          ASSERT_NEAR(out, mean, 1e-6) << run.target_name << " row " << i;
        }
      }
      for (std::int64_t i = 0; i < c.seq_q; ++i) {
        ASSERT_NEAR(run.comparison.lse_values[h * c.seq_q + i],
                    std::log(static_cast<double>(c.seq_k)), 1e-6);
      }
    }
  }
}

// (h) Empty problems are valid and write nothing, or (no keys) zeros.
TEST(Numerics, EmptyProblems) {
  Case no_batch;
  no_batch.batch = 0;
  Case no_queries;
  no_queries.seq_q = 0;
  Case no_keys;  // every row sees nothing: out = 0, lse = -inf
  no_keys.batch = 2, no_keys.seq_k = 0;
  Case empty_packed;
  empty_packed.cu_seqlens_q = {0, 0, 0}, empty_packed.cu_seqlens_k = {0, 0, 0};
  empty_packed.seq_q = 0, empty_packed.seq_k = 3;
  for (const Case& c : {no_batch, no_queries, no_keys, empty_packed}) {
    CaseData data(c);
    for (const TargetRun& run : ExpectMatchesReference(data)) {
      EXPECT_EQ(run.comparison.live_rows, 0)
          << run.target_name << ": " << Describe(c);
    }
  }

  // Empty tensors may have null data, as an empty torch tensor does.
  const TensorView q = TensorView::Bnhd(nullptr, DType::kF32, 0, 4, 2, 8);
  const TensorView v = TensorView::Bnhd(nullptr, DType::kF32, 0, 5, 2, 8);
  for (std::int64_t target : simd::RunnableTargets()) {
    simd::ScopedTarget only(target);
    EXPECT_TRUE(AttentionForward(q, v, v, q, {}).ok())
        << simd::TargetName(target);
  }
}

}  // namespace
}  // namespace salience::harness
