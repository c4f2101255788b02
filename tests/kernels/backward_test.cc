// The fused backward (AttentionBackward) against the fp64 reference
// backward, on every SIMD target the CPU runs: hand-picked shapes for each
// option, the random battery of the forward with dropout mixed in, bitwise
// determinism across thread counts, and gradients of rows that see nothing.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/validate.h"
#include "harness.h"
#include "kernels/ref/backward_ref.h"
#include "kernels/simd/backward.h"
#include "kernels/simd/backward_schedule.h"
#include "kernels/simd/forward.h"
#include "random_case.h"
#include "salience/attention.h"

namespace salience::harness {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
// Guard value around gradient views: as fp32 bits or as two 16-bit halves.
constexpr std::uint32_t kSentinelBits = 0x12341234u;
constexpr std::uint16_t kSentinelHalf = 0x1234u;

// Calls f(logical index, storage offset) for every element of a rank-4 view.
template <typename F>
void ForEachElement(const TensorView& v, F f) {
  std::int64_t logical = 0;
  for (std::int64_t a = 0; a < v.shape[0]; ++a) {
    for (std::int64_t b = 0; b < v.shape[1]; ++b) {
      for (std::int64_t c = 0; c < v.shape[2]; ++c) {
        for (std::int64_t d = 0; d < v.shape[3]; ++d) f(logical++, v.Offset(a, b, c, d));
      }
    }
  }
}

// A buffer laid out like `like` (same view strides, guards and gaps), every
// element `fill`.
Buffer<float> Like(const Buffer<float>& like, float fill) {
  Buffer<float> b;
  b.storage.assign(like.storage.size(), fill);
  b.view = like.view;
  b.view.data = b.storage.data() + (static_cast<const float*>(like.view.data) - like.storage.data());
  return b;
}


// The buffer's view in `dtype`: a 16-bit view keeps the fp32 layout's
// element offsets (its elements lie in the first half of the storage), so
// the fp32 view's OutsideView() names its guards too.
TensorView AsDType(const Buffer<float>& b, DType dtype) {
  TensorView view = b.view;
  if (dtype == DType::kF32) return view;
  const std::int64_t offset = static_cast<const float*>(b.view.data) - b.storage.data();
  view.data = const_cast<std::uint16_t*>(reinterpret_cast<const std::uint16_t*>(b.storage.data())) +
              offset;
  view.dtype = dtype;
  return view;
}

void FillView(const TensorView& view, float value) {
  ForEachElement(view, [&](std::int64_t, std::int64_t at) { core::StoreFloat(view, at, value); });
}

// The largest unit roundoff a gradient stored in `dtype` may carry.
double StorageRounding(DType dtype) {
  if (dtype == DType::kBF16) return std::ldexp(1.0, -8);
  if (dtype == DType::kF16) return std::ldexp(1.0, -11);
  return 0.0;
}

struct Dropout {
  float p = 0.0f;
  std::uint64_t seed = 0, offset = 0;
};

Case WithLse(Case c) {
  c.with_lse = true;
  return c;
}

// One backward problem: the case's tensors, the forward's out and lse (from
// the reference forward), a random d_out, and the reference gradients.
class BackwardCase {
 public:
  explicit BackwardCase(const Case& c, Dropout dropout = {}) : data_(WithLse(c)) {
    data_.options.dropout_p = dropout.p;
    data_.options.dropout_seed = dropout.seed;
    data_.options.dropout_offset = dropout.offset;
    status_ = AttentionForwardReference(data_.q.view, data_.k.view, data_.v.view, data_.out.view,
                                        data_.options, &data_.lse.view);
    if (!status_.ok()) return;
    d_out_ = Like(data_.out, kNaN);
    std::mt19937_64 rng(c.seed ^ 0x5eed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    auto* g = static_cast<float*>(d_out_.view.data);
    ForEachElement(d_out_.view, [&](std::int64_t, std::int64_t at) { g[at] = normal(rng); });
    Buffer<float> dq = Like(data_.q, 0.0f), dk = Like(data_.k, 0.0f), dv = Like(data_.v, 0.0f);
    core::Problem problem;
    status_ = core::ValidateBackward(data_.q.view, data_.k.view, data_.v.view, data_.out.view,
                                     d_out_.view, data_.lse.view, dq.view, dk.view, dv.view,
                                     data_.options, &problem);
    if (status_.ok()) ref_ = ref::Backward(problem);
  }

  const Status& status() const { return status_; }
  const CaseData& data() const { return data_; }

  struct Gradients {
    Status status;
    Buffer<float> dq, dk, dv;  // fp32 layouts (guards), viewed in `dtype`
    DType dtype;
  };

  // AttentionBackward on fresh outputs in `grad_dtype`: NaN in the views
  // (every element must be written), the sentinel around them (none may
  // be). q, k and v go in the case's dtypes.
  Gradients Run(int num_threads, DType grad_dtype = DType::kF32) {
    const float sentinel = std::bit_cast<float>(kSentinelBits);
    Gradients g{Status::Ok(), Like(data_.q, sentinel), Like(data_.k, sentinel),
                Like(data_.v, sentinel), grad_dtype};
    const TensorView dq = AsDType(g.dq, grad_dtype), dk = AsDType(g.dk, grad_dtype),
                     dv = AsDType(g.dv, grad_dtype);
    FillView(dq, kNaN);
    FillView(dk, kNaN);
    FillView(dv, kNaN);
    AttentionOptions options = data_.options;
    options.num_threads = num_threads;
    g.status = AttentionBackward(data_.q_view(), data_.k_view(), data_.v_view(), data_.out.view,
                                 d_out_.view, data_.lse.view, dq, dk, dv, options);
    return g;
  }

  // max |fast - ref| of each gradient relative to its magnitude, and
  // defects: NaN mismatches, overwritten guards. The magnitude is the larger
  // of max |ref| and a bound on the terms the gradient sums: with
  // |dP_ij| <= |dO_i| |V_j| =: G, dQ_i sums scale dS_ij K_j with
  // |dS_ij| <= 2 P_ij G, so |scale| G max |K_j| bounds its terms (likewise
  // dK with Q, dV with |dO|). Exact gradients can cancel to ~0 (a row with a
  // single key has dS = 0): fp32 rounding of those terms is then all there
  // is, and the bound keeps the measure meaningful.
  struct Errors {
    double dq = 0, dk = 0, dv = 0;
    std::vector<std::string> defects;
  };

  Errors Compare(const Gradients& g) const {
    const double scale = std::abs(data_.options.scale.value_or(
        1.0f / std::sqrt(static_cast<float>(data_.spec().head_dim))));
    const double d_out = MaxRowNorm(d_out_.view), values = MaxRowNorm(data_.v.view);
    const double terms = d_out * values;
    Errors e;
    e.dq = Error("dq", g.dq, g.dtype, ref_.dq, scale * terms * MaxRowNorm(data_.k.view),
                 &e.defects);
    e.dk = Error("dk", g.dk, g.dtype, ref_.dk, scale * terms * MaxRowNorm(data_.q.view),
                 &e.defects);
    e.dv = Error("dv", g.dv, g.dtype, ref_.dv, d_out, &e.defects);
    return e;
  }

 private:
  // The largest L2 norm of a head_dim row with finite entries.
  static double MaxRowNorm(const TensorView& v) {
    const auto* data = static_cast<const float*>(v.data);
    double worst = 0.0, row = 0.0;
    ForEachElement(v, [&](std::int64_t i, std::int64_t at) {
      if (std::isfinite(data[at])) row += static_cast<double>(data[at]) * data[at];
      if ((i + 1) % v.shape[3] == 0) {
        worst = std::max(worst, std::sqrt(row));
        row = 0.0;
      }
    });
    return worst;
  }

  static double Error(const char* name, const Buffer<float>& fast, DType dtype,
                      const std::vector<double>& ref, double term_bound,
                      std::vector<std::string>* defects) {
    const TensorView view = AsDType(fast, dtype);
    double scale = term_bound, worst = 0.0;
    for (double r : ref) {
      if (!std::isnan(r)) scale = std::max(scale, std::abs(r));
    }
    ForEachElement(fast.view, [&](std::int64_t i, std::int64_t at) {
      const double f = core::LoadFloat(view, at), r = ref[static_cast<std::size_t>(i)];
      if (std::isnan(f) != std::isnan(r)) {
        if (defects->size() < 4) {
          defects->push_back(std::string(name) + "[" + std::to_string(i) + "] = " +
                             std::to_string(f) + ", reference " + std::to_string(r));
        }
        return;
      }
      if (!std::isnan(r)) worst = std::max(worst, std::abs(f - r));
    });
    const auto* halves = reinterpret_cast<const std::uint16_t*>(fast.storage.data());
    for (std::int64_t at : fast.OutsideView()) {
      const bool kept = dtype == DType::kF32
                            ? std::bit_cast<std::uint32_t>(fast.storage[static_cast<std::size_t>(at)]) ==
                                  kSentinelBits
                            : halves[at] == kSentinelHalf;
      if (!kept) {
        defects->push_back(std::string(name) + ": guard element " + std::to_string(at) +
                           " overwritten");
        break;
      }
    }
    return worst / std::max(scale, 1e-30);
  }

  CaseData data_;
  Status status_ = Status::Ok();
  Buffer<float> d_out_;
  ref::BackwardResult ref_;
};

// Relative to the gradient's magnitude (see Compare): fp32 scores and
// weights summed over up to ~1000 rows or keys. The battery's worst is
// reported by the test binary.
constexpr double kTolerance = 2e-5;
double worst_seen = 0.0;

// 16-bit gradients add their storage rounding (the kernel computes in fp32
// and rounds each gradient once, or once per query segment for dK and dV).
void ExpectGradientsMatch(const Case& c, Dropout dropout = {},
                          DType grad_dtype = DType::kF32) {
  SCOPED_TRACE(Describe(c) + (dropout.p > 0 ? " dropout " + std::to_string(dropout.p) : "") +
               " gradients " + DTypeName(grad_dtype));
  BackwardCase bc(c, dropout);
  ASSERT_TRUE(bc.status().ok()) << bc.status().message();
  const double tolerance = kTolerance + StorageRounding(grad_dtype);
  for (std::int64_t target : simd::RunnableTargets()) {
    SCOPED_TRACE(simd::TargetName(target));
    const simd::ScopedTarget scoped(target);
    const BackwardCase::Gradients g = bc.Run(c.num_threads, grad_dtype);
    ASSERT_TRUE(g.status.ok()) << g.status.message();
    const BackwardCase::Errors e = bc.Compare(g);
    EXPECT_TRUE(e.defects.empty()) << e.defects.front();
    EXPECT_LE(e.dq, tolerance);
    EXPECT_LE(e.dk, tolerance);
    EXPECT_LE(e.dv, tolerance);
    if (grad_dtype == DType::kF32) worst_seen = std::max({worst_seen, e.dq, e.dk, e.dv});
  }
}

class ReportWorst : public ::testing::Environment {
 public:
  void TearDown() override { std::printf("Worst backward error: %.3g\n", worst_seen); }
};
const ::testing::Environment* const kReport =
    ::testing::AddGlobalTestEnvironment(new ReportWorst);

Case Dense(std::int64_t seq_q, std::int64_t seq_k, std::int64_t head_dim) {
  Case c;
  c.seq_q = seq_q, c.seq_k = seq_k, c.head_dim = c.head_dim_v = head_dim;
  return c;
}

TEST(BackwardSweep, ShapesAndHeadDims) {
  for (std::int64_t n : {1, 7, 63, 97, 113, 256, 300}) {
    for (std::int64_t d : {1, 8, 32, 59, 64, 128}) ExpectGradientsMatch(Dense(n, n, d));
  }
  ExpectGradientsMatch(Dense(5, 700, 64));  // keys span chunks
  ExpectGradientsMatch(Dense(700, 5, 64));
  Case wide = Dense(40, 90, 256);
  wide.head_dim_v = 111;
  ExpectGradientsMatch(wide);
}

TEST(BackwardSweep, CausalWindowsGqa) {
  for (Causal causal : {Causal::kTopLeft, Causal::kBottomRight}) {
    for (auto [sq, sk] : {std::pair{200, 200}, {97, 600}, {600, 97}}) {
      Case c = Dense(sq, sk, 64);
      c.causal = causal;
      c.heads_q = 4, c.heads_kv = 2;
      ExpectGradientsMatch(c);
    }
  }
  for (Align align : {Align::kTopLeft, Align::kBottomRight}) {
    Case c = Dense(300, 520, 32);
    c.window_left = 70, c.window_right = 3, c.window_align = align;
    c.heads_q = 8, c.heads_kv = 1;  // MQA
    ExpectGradientsMatch(c);
  }
}

TEST(BackwardSweep, PaddingVarlenLayouts) {
  Case padded = Dense(130, 270, 64);
  padded.batch = 3, padded.seqlens_q = {130, 0, 77}, padded.seqlens_k = {1, 270, 200};
  padded.layout = Layout::kStrided;
  ExpectGradientsMatch(padded);
  Case varlen = Dense(0, 0, 48);
  varlen.batch = 3, varlen.cu_seqlens_q = {0, 100, 100, 161}, varlen.cu_seqlens_k = {0, 300, 301, 500};
  varlen.seq_q = 163, varlen.seq_k = 502, varlen.heads_q = 4, varlen.heads_kv = 2;
  varlen.layout = Layout::kHeadsInner, varlen.causal = Causal::kBottomRight;
  ExpectGradientsMatch(varlen);
}

TEST(BackwardSweep, MasksAlibiSoftcap) {
  for (MaskKind kind : {MaskKind::kBool, MaskKind::kAdditive}) {
    for (MaskForm form : kMaskForms) {
      Case c = Dense(90, 150, 32);
      c.batch = 2, c.mask = kind, c.mask_form = form, c.mask_hidden_share = 0.3;
      ExpectGradientsMatch(c);
    }
  }
  Case alibi = Dense(120, 200, 64);
  alibi.alibi = Alibi::kPerBatch, alibi.batch = 2, alibi.causal = Causal::kBottomRight;
  ExpectGradientsMatch(alibi);
  for (float cap : {1.0f, 5.0f, 30.0f}) {
    Case c = Dense(100, 260, 64);
    c.softcap = cap, c.value_scale = 3.0f;
    ExpectGradientsMatch(c);
  }
}

TEST(BackwardSweep, Dropout) {
  for (float p : {0.1f, 0.5f, 0.9f}) {
    Case c = Dense(150, 280, 64);
    c.causal = Causal::kTopLeft, c.heads_q = 4, c.heads_kv = 2;
    ExpectGradientsMatch(c, {p, 1234, 56});
  }
  Case varlen = Dense(0, 0, 32);
  varlen.batch = 2, varlen.cu_seqlens_q = {0, 40, 90}, varlen.cu_seqlens_k = {0, 70, 100};
  varlen.seq_q = 90, varlen.seq_k = 100;
  ExpectGradientsMatch(varlen, {0.3f, 99, 1ull << 33});
}

// A multi-phase problem: dQ slots of one (sequence, head) exceed the slot
// budget only at very long sequences, so a long key range with few rows
// and many kv heads exercises many chunks and tasks per phase instead.
TEST(BackwardSweep, ManyChunksAndTasks) {
  Case c = Dense(64, 1700, 64);
  c.batch = 2, c.heads_q = 6, c.heads_kv = 3, c.num_threads = 3;
  c.causal = Causal::kBottomRight, c.seqlens_k = {1700, 1100};
  ExpectGradientsMatch(c);
}

// bf16 and f16 inputs and gradients: the kernel widens q, k, v as it reads
// them and rounds each gradient once.
TEST(BackwardSweep, LowPrecision) {
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    Case c = Dense(130, 300, 64);
    c.q_dtype = c.kv_dtype = dtype, c.heads_q = 4, c.heads_kv = 2;
    c.causal = Causal::kBottomRight, c.layout = Layout::kStrided;
    ExpectGradientsMatch(c, {}, dtype);
    Case mixed = Dense(70, 90, 32);  // fp32 queries, 16-bit keys and values
    mixed.kv_dtype = dtype, mixed.softcap = 5.0f, mixed.mask = MaskKind::kAdditive;
    ExpectGradientsMatch(mixed, {0.1f, 5, 6}, DType::kF32);
    ExpectGradientsMatch(mixed, {}, dtype);
  }
  Case segmented = Dense(300, 700, 32);  // 16-bit dK and dV over segments
  segmented.q_dtype = segmented.kv_dtype = DType::kBF16, segmented.heads_q = 2;
  const simd::ScopedBackwardSlotBudget budget(std::int64_t{64} << 10);
  ExpectGradientsMatch(segmented, {}, DType::kBF16);
}

// Query segments in successive phases (a slot budget far below the
// default), several tasks per phase, and bitwise agreement of the
// segmented run with the unsegmented one's threads.
TEST(BackwardSweep, QuerySegmentsAcrossPhases) {
  Case c = Dense(300, 700, 64);
  c.heads_q = 4, c.heads_kv = 2, c.batch = 2, c.seqlens_q = {300, 200};
  c.causal = Causal::kBottomRight, c.num_threads = 3;
  for (std::int64_t budget : {std::int64_t{64} << 10, std::int64_t{8} << 20}) {
    const simd::ScopedBackwardSlotBudget scoped(budget);
    ExpectGradientsMatch(c, {0.2f, 3, 4});
  }
}

// The plan behind that test: at 64 KiB the 300-row sequence is cut into
// segments of whole query tiles, a phase never holds two segments of one
// (sequence, kv head) pair, and its slots fit the budget.
TEST(BackwardSchedule, SegmentsWhenSlotsExceedBudget) {
  Case c = Dense(300, 700, 64);
  c.heads_q = 4, c.heads_kv = 2, c.batch = 2, c.seqlens_q = {300, 200};
  CaseData data(c);
  core::Problem p;
  ASSERT_TRUE(core::ValidateForward(data.q.view, data.k.view, data.v.view, data.out.view,
                                    data.options, nullptr, &p)
                  .ok());
  constexpr std::int64_t kBudget = std::int64_t{64} << 10, kTile = 96;
  const std::vector<simd::BackwardPhase> phases = simd::PlanBackward(p, kTile, 6, 64, 64, kBudget);
  int segments = 0;
  for (const simd::BackwardPhase& phase : phases) {
    EXPECT_LE(phase.slot_floats * 4, phase.tasks.size() == 1 ? 4 * kBudget : kBudget);
    for (std::size_t a = 0; a < phase.tasks.size(); ++a) {
      const simd::BackwardTask& task = phase.tasks[a];
      segments += task.row_begin > 0;
      EXPECT_EQ(task.row_begin % kTile, 0);
      for (std::size_t b = a + 1; b < phase.tasks.size(); ++b) {
        EXPECT_FALSE(task.seq == phase.tasks[b].seq && task.kv_head == phase.tasks[b].kv_head);
      }
    }
  }
  EXPECT_GT(segments, 4);
}

TEST(BackwardNumerics, BitwiseAcrossThreadCounts) {
  Case c = Dense(333, 777, 64);
  c.heads_q = 4, c.heads_kv = 2, c.causal = Causal::kBottomRight;
  BackwardCase bc(c, {0.2f, 7, 0});
  ASSERT_TRUE(bc.status().ok());
  const BackwardCase::Gradients one = bc.Run(1);
  for (int threads : {2, 3, 4}) {
    const BackwardCase::Gradients more = bc.Run(threads);
    EXPECT_EQ(one.dq.storage, more.dq.storage) << threads << " threads";
    EXPECT_EQ(one.dk.storage, more.dk.storage) << threads << " threads";
    EXPECT_EQ(one.dv.storage, more.dv.storage) << threads << " threads";
  }
}

// Rows whose keys are all hidden (lse = -inf) get exactly zero dq and give
// nothing to dk and dv; NaN stored in hidden keys never reaches a gradient.
TEST(BackwardNumerics, HiddenRowsAndKeys) {
  Case c = Dense(64, 64, 32);
  c.mask = MaskKind::kBool, c.mask_form = MaskForm::kQueryRows, c.mask_hidden_share = 0.5;
  BackwardCase bc(c);
  ASSERT_TRUE(bc.status().ok());
  const BackwardCase::Gradients g = bc.Run(2);
  ASSERT_TRUE(g.status.ok());
  const CaseData& data = bc.data();
  int hidden_rows = 0;
  for (std::int64_t i = 0; i < c.seq_q; ++i) {
    for (std::int64_t h = 0; h < c.heads_q; ++h) {
      const float lse = static_cast<const float*>(data.lse.view.data)[data.lse.view.Offset(0, h, i)];
      if (lse != -std::numeric_limits<float>::infinity()) continue;
      ++hidden_rows;
      for (std::int64_t d = 0; d < c.head_dim; ++d) {
        EXPECT_EQ(static_cast<const float*>(g.dq.view.data)[g.dq.view.Offset(0, i, h, d)], 0.0f);
      }
    }
  }
  EXPECT_GT(hidden_rows, 0);

  // Causal: key j is hidden from rows i < j; NaN in the last key's k and v
  // reaches the dq of the last row, the only one that sees it, and no other.
  Case causal = Dense(40, 40, 16);
  causal.causal = Causal::kTopLeft;
  CaseData poisoned(causal);
  const std::int64_t last = causal.seq_k - 1;
  for (std::int64_t h = 0; h < causal.heads_kv; ++h) {
    poisoned.k.At(0, last, h, 3) = kNaN;
    poisoned.v.At(0, last, h, 5) = kNaN;
  }
  ASSERT_TRUE(AttentionForward(poisoned.q.view, poisoned.k.view, poisoned.v.view,
                               poisoned.out.view, poisoned.options, &poisoned.lse.view)
                  .ok());
  Buffer<float> d_out = Like(poisoned.out, 1.0f), dq = Like(poisoned.q, 0.0f),
                dk = Like(poisoned.k, 0.0f), dv = Like(poisoned.v, 0.0f);
  ASSERT_TRUE(AttentionBackward(poisoned.q.view, poisoned.k.view, poisoned.v.view,
                                poisoned.out.view, d_out.view, poisoned.lse.view, dq.view,
                                dk.view, dv.view, poisoned.options)
                  .ok());
  for (std::int64_t i = 0; i < last; ++i) {
    for (std::int64_t h = 0; h < causal.heads_q; ++h) {
      for (std::int64_t d = 0; d < causal.head_dim; ++d) {
        ASSERT_FALSE(std::isnan(dq.At(0, i, h, d))) << "row " << i;
      }
    }
  }
  EXPECT_TRUE(std::isnan(dq.At(0, last, 0, 0)));  // the row that sees it
}

// The forward's random battery, backward: 4 shards of 40 mixed cases, a
// fifth of them with dropout.
class BackwardRandom : public ::testing::TestWithParam<int> {};

TEST_P(BackwardRandom, MixedFeatures) {
  constexpr int kCases = 40;
  constexpr double kBudget = 1.5e7;
  std::mt19937_64 rng(777000 + GetParam());
  for (int n = 0; n < kCases; ++n) {
    const Case c = RandomCase(rng, kBudget);
    Dropout dropout;
    if (Chance(rng, 0.2)) dropout = {0.25f, rng(), rng()};
    SCOPED_TRACE("shard " + std::to_string(GetParam()) + " case " + std::to_string(n));
    ExpectGradientsMatch(c, dropout);
  }
}

INSTANTIATE_TEST_SUITE_P(Shards, BackwardRandom, ::testing::Range(0, 4));

}  // namespace
}  // namespace salience::harness
