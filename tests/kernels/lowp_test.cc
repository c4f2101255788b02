// bf16 and f16 inputs and outputs of the fused forward (fp32 accumulation).
//
// Tolerances are derived as FlashAttention derives them: the fast kernel's
// error against the fp64 reference, run on the same 16-bit input values
// widened, may be at most twice the error of a plain implementation in the
// same dtype (PlainLowPrecision: naive attention with every intermediate
// rounded to the dtype, as torch's math path computes in bf16), plus a
// small floor. Every case runs under every SIMD target the CPU has, and bf16
// cases under both bf16 paths (the vdpbf16ps tiles where the CPU has
// AVX512_BF16, and the widen-to-fp32 tiles).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/half.h"
#include "core/problem.h"
#include "core/validate.h"
#include "harness.h"
#include "hwy/targets.h"
#include "kernels/simd/forward.h"
#include "random_case.h"

namespace salience::harness {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();

float Round(float value, DType dtype) {
  if (dtype == DType::kBF16) return core::F32FromBF16(core::BF16FromF32(value));
  return core::F32FromF16(core::F16FromF32(value));
}

// Unit roundoff of a 16-bit dtype: 2^-8 for bf16, 2^-11 for f16.
double UnitRoundoff(DType dtype) {
  return dtype == DType::kBF16 ? 0x1p-8 : 0x1p-11;
}

// The precision a plain implementation of the case computes in: bf16 when
// any tensor is bf16, else f16.
DType WorkingDType(const Case& c) {
  for (DType d : {c.q_dtype, c.kv_dtype, c.out_dtype}) {
    if (d == DType::kBF16) return DType::kBF16;
  }
  return DType::kF16;
}

// Naive attention of one row with every intermediate rounded to `dtype`:
// S = q k^T (fp32 sums, rounded), times scale (rounded), softcap/ALiBi/mask
// (rounded), softmax in fp32 rounded to the dtype, O = P V (fp32 sums,
// rounded). lse = m + log(l) stays fp32, as torch's logsumexp of a bf16
// tensor does.
void PlainRow(const core::Problem& p, const core::SeqSpan& seq,
              std::int64_t s_idx, std::int64_t h, std::int64_t i, DType dtype,
              double* out, double* lse) {
  const core::KeyRange keys = p.Keys(seq, i);
  const std::int64_t b = seq.tensor_batch, kv = h / p.group_size();
  std::vector<float> weights;
  std::vector<std::int64_t> visible;
  float row_max = -std::numeric_limits<float>::infinity();
  for (std::int64_t j = std::max<std::int64_t>(keys.begin, 0); j < keys.end;
       ++j) {
    float dot = 0.0f;
    for (std::int64_t c = 0; c < p.head_dim; ++c) {
      dot += core::LoadFloat(p.q, p.q.Offset(b, seq.q_begin + i, h, c)) *
             core::LoadFloat(p.k, p.k.Offset(b, seq.k_begin + j, kv, c));
    }
    float score = Round(Round(dot, dtype) * p.scale, dtype);
    score = core::ModifyScore<float>(p, seq, s_idx, h, i, j, score);
    if (score == -std::numeric_limits<float>::infinity()) continue;
    score = Round(score, dtype);
    weights.push_back(score);
    visible.push_back(j);
    row_max = std::max(row_max, score);
  }
  if (visible.empty()) return;
  float sum = 0.0f;
  for (float& w : weights) sum += (w = std::exp(w - row_max));
  for (float& w : weights) w = Round(w / sum, dtype);
  for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
    float acc = 0.0f;
    for (std::size_t n = 0; n < visible.size(); ++n) {
      acc +=
          weights[n] *
          core::LoadFloat(p.v, p.v.Offset(b, seq.k_begin + visible[n], kv, c));
    }
    out[c] = Round(acc, dtype);
  }
  *lse = row_max + std::log(sum);
}

// PlainRow over the case, indexed as ref::ForwardResult.
ref::ForwardResult PlainLowPrecision(const CaseData& data, DType dtype) {
  core::Problem p;
  EXPECT_TRUE(core::ValidateForward(data.q.view, data.k.view, data.v.view,
                                    data.out.view, data.options, nullptr, &p)
                  .ok());
  const Case& c = data.spec();
  ref::ForwardResult result;
  result.out.assign(c.tensor_batch() * c.seq_q * c.heads_q * c.head_dim_v, 0.0);
  result.lse.assign(c.tensor_batch() * c.heads_q * c.seq_q, kNegInf);
  for (std::int64_t s = 0; s < p.num_seqs; ++s) {
    const core::SeqSpan seq = p.Seq(s);
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      for (std::int64_t i = 0; i < seq.q_len; ++i) {
        const std::int64_t row = seq.q_begin + i, b = seq.tensor_batch;
        PlainRow(
            p, seq, s, h, i, dtype,
            &result.out[((b * c.seq_q + row) * c.heads_q + h) * c.head_dim_v],
            &result.lse[(b * c.heads_q + h) * c.seq_q + row]);
      }
    }
  }
  return result;
}

// The plain implementation's errors, measured as Comparison measures the
// fast kernel's: out relative to the largest reference output, lse
// absolute (relative past 1), over live rows.
struct PlainErrors {
  double out = 0.0, lse = 0.0;
};

PlainErrors MeasurePlain(const ref::ForwardResult& plain,
                         const ref::ForwardResult& ref, const Case& c) {
  PlainErrors errors;
  double max_diff = 0.0, max_ref = 0.0;
  for (std::int64_t b = 0; b < c.tensor_batch(); ++b) {
    for (std::int64_t h = 0; h < c.heads_q; ++h) {
      for (std::int64_t i = 0; i < c.seq_q; ++i) {
        const std::int64_t at = (b * c.heads_q + h) * c.seq_q + i;
        if (ref.lse[at] == kNegInf) continue;
        errors.lse =
            std::max(errors.lse, std::abs(plain.lse[at] - ref.lse[at]) /
                                     std::max(1.0, std::abs(ref.lse[at])));
        const std::int64_t base =
            ((b * c.seq_q + i) * c.heads_q + h) * c.head_dim_v;
        for (std::int64_t d = 0; d < c.head_dim_v; ++d) {
          max_diff = std::max(
              max_diff, std::abs(plain.out[base + d] - ref.out[base + d]));
          max_ref = std::max(max_ref, std::abs(ref.out[base + d]));
        }
      }
    }
  }
  errors.out = max_diff / std::max(max_ref, 1e-30);
  return errors;
}

// The bf16 paths a case runs under on `target`: both where the dot-product
// tiles exist (q, k and v bf16, AVX-512 with AVX512_BF16), else the one path.
std::vector<simd::Bf16Path> PathsFor(const Case& c, std::int64_t target) {
  if (c.q_dtype != DType::kBF16 || c.kv_dtype != DType::kBF16)
    return {simd::Bf16Path::kAuto};
  if (target == HWY_AVX3 && simd::CpuHasDotBf16()) {
    return {simd::Bf16Path::kWiden, simd::Bf16Path::kDotProduct};
  }
  return {simd::Bf16Path::kWiden};
}

const char* PathName(simd::Bf16Path path) {
  switch (path) {
    case simd::Bf16Path::kDotProduct:
      return "dot-bf16";
    case simd::Bf16Path::kWiden:
      return "widen";
    case simd::Bf16Path::kAuto:
      break;
  }
  return "auto";
}

// Runs the case on every target and path and expects each result clean and
// within 2x the plain implementation's error plus `floor` (in units of the
// working dtype's roundoff).
void ExpectWithinPlainError(CaseData& data, double floor = 0.5) {
  const Case& c = data.spec();
  data.NarrowInputs();
  ref::ForwardResult ref;
  ASSERT_TRUE(RunReference(data, &ref).ok());
  const DType dtype = WorkingDType(c);
  const PlainErrors plain =
      MeasurePlain(PlainLowPrecision(data, dtype), ref, c);
  const double slack = floor * UnitRoundoff(dtype);
  for (std::int64_t target : simd::RunnableTargets()) {
    simd::ScopedTarget only(target);
    for (simd::Bf16Path path : PathsFor(c, target)) {
      simd::ScopedBf16Path forced(path);
      SCOPED_TRACE(std::string(simd::TargetName(target)) + " " +
                   PathName(path) + ": " + Describe(c));
      const Comparison got = RunFastAndCompare(data, ref);
      ASSERT_TRUE(got.status.ok()) << got.status.message();
      for (const std::string& defect : got.defects) ADD_FAILURE() << defect;
      EXPECT_LE(got.out_error, 2.0 * plain.out + slack)
          << "plain " << plain.out;
      if (c.with_lse)
        EXPECT_LE(got.lse_error, 2.0 * plain.lse + slack)
            << "plain " << plain.lse;
    }
  }
}

void ExpectWithinPlainError(const Case& c) {
  CaseData data(c);
  ExpectWithinPlainError(data);
}

Case Dense(DType q, DType kv, DType out) {
  Case c;
  c.q_dtype = q, c.kv_dtype = kv, c.out_dtype = out;
  return c;
}

TEST(LowPrecision, EveryDTypeCombination) {
  const DType kFloats[] = {DType::kF32, DType::kBF16, DType::kF16};
  for (DType q : kFloats) {
    for (DType kv : kFloats) {
      for (DType out : kFloats) {
        if (q == DType::kF32 && kv == DType::kF32 && out == DType::kF32)
          continue;
        Case c = Dense(q, kv, out);
        c.seq_q = 70, c.seq_k = 131, c.head_dim = 59, c.head_dim_v = 40;
        c.causal = Causal::kBottomRight;
        ExpectWithinPlainError(c);
      }
    }
  }
}

TEST(LowPrecision, AwkwardShapesAndOptions) {
  Case odd = Dense(DType::kBF16, DType::kBF16, DType::kBF16);
  odd.seq_q = 97, odd.seq_k = 203, odd.head_dim = 1, odd.head_dim_v = 17;
  odd.heads_q = 4, odd.heads_kv = 2, odd.layout = Layout::kStrided;
  ExpectWithinPlainError(odd);

  Case wide = Dense(DType::kBF16, DType::kBF16, DType::kBF16);
  wide.seq_q = 100, wide.seq_k = 129, wide.head_dim = 111, wide.head_dim_v = 80;
  wide.layout = Layout::kHeadsInner, wide.window_left = 30,
  wide.window_right = 5;
  wide.softcap = 20.0f, wide.alibi = Alibi::kPerHead, wide.num_threads = 2;
  ExpectWithinPlainError(wide);

  Case masked = Dense(DType::kBF16, DType::kBF16, DType::kF32);
  masked.batch = 2, masked.seq_q = 33, masked.seq_k = 77, masked.head_dim = 64;
  masked.mask = MaskKind::kAdditive, masked.mask_form = MaskForm::kQueryRows;
  masked.seqlens_q = {33, 20}, masked.seqlens_k = {77, 9},
  masked.layout = Layout::kBhnd;
  ExpectWithinPlainError(masked);

  Case varlen = Dense(DType::kF16, DType::kF16, DType::kF16);
  varlen.batch = 3, varlen.seq_q = 90, varlen.seq_k = 140, varlen.head_dim = 32;
  varlen.cu_seqlens_q = {0, 10, 10, 80}, varlen.cu_seqlens_k = {0, 70, 75, 140};
  varlen.mask = MaskKind::kBool, varlen.mask_form = MaskForm::kKeyPadding;
  varlen.causal = Causal::kTopLeft, varlen.alibi = Alibi::kPerBatch;
  ExpectWithinPlainError(varlen);
}

// Rows whose keys span several packing phases park their partial output in
// fp32 between phases, not in the 16-bit out (16 MiB of packed K and V per
// phase: 9000 keys at head_dim 512 take three phases widened, two as bf16).
TEST(LowPrecision, CarriedStateStaysFp32) {
  Case c = Dense(DType::kBF16, DType::kBF16, DType::kBF16);
  c.seq_q = 5, c.seq_k = 9000, c.heads_q = c.heads_kv = 1;
  c.head_dim = c.head_dim_v = 512, c.distribution = Distribution::kUniform;
  ExpectWithinPlainError(c);
}

TEST(LowPrecision, RandomBattery) {
  constexpr int kCases = 24;
  constexpr double kBudget = 1.5e6;  // reference multiply-adds per case
  const DType kFloats[] = {DType::kF32, DType::kBF16, DType::kF16};
  std::mt19937_64 rng(20251125);
  for (int n = 0; n < kCases; ++n) {
    Case c = RandomCase(rng, kBudget);
    // Half the cases all bf16 (both bf16 paths), the rest mixed.
    if (n % 2 == 0) {
      c.q_dtype = c.kv_dtype = c.out_dtype = DType::kBF16;
    } else {
      c.q_dtype = Pick(rng, kFloats), c.out_dtype = Pick(rng, kFloats);
      c.kv_dtype = Chance(rng, 0.5) ? DType::kBF16 : DType::kF16;
    }
    SCOPED_TRACE("case " + std::to_string(n));
    ExpectWithinPlainError(c);
  }
}

// Values stored at padding keys never reach a row, NaN included, on the
// bf16 path too (its packed V of a hidden NaN key is skipped, not zeroed).
TEST(LowPrecision, NaNInPaddingDoesNotLeak) {
  Case c = Dense(DType::kBF16, DType::kBF16, DType::kBF16);
  c.batch = 2, c.seq_q = 40, c.seq_k = 100, c.head_dim = 64;
  c.seqlens_k = {70, 100}, c.causal = Causal::kBottomRight;
  CaseData data(c);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (std::int64_t j = 70; j < 100; ++j) {
    for (std::int64_t d = 0; d < c.head_dim; ++d) {
      data.k.At(0, j, 0, d) = data.k.At(0, j, 1, d) = nan;
      data.v.At(0, j, 0, d) = data.v.At(0, j, 1, d) = nan;
    }
  }
  ExpectWithinPlainError(data);
}

// NaN in V at keys a bool mask hides: packed (inside the valid length), so
// the PV product must skip those keys, on the dot-product path too.
TEST(LowPrecision, NaNAtMaskedKeysDoesNotLeak) {
  Case c = Dense(DType::kBF16, DType::kBF16, DType::kBF16);
  c.batch = 2, c.seq_q = 30, c.seq_k = 150, c.head_dim = 32, c.head_dim_v = 48;
  c.mask = MaskKind::kBool, c.mask_form = MaskForm::kKeyPadding;
  c.mask_hidden_share = 0.3;
  CaseData data(c);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  int poisoned = 0;
  for (std::int64_t b = 0; b < c.batch; ++b) {
    for (std::int64_t j = 0; j < c.seq_k; ++j) {
      if (data.bool_mask.At(b, 0, 0, j) != 0) continue;
      ++poisoned;
      for (std::int64_t h = 0; h < c.heads_kv; ++h) {
        for (std::int64_t d = 0; d < c.head_dim_v; ++d)
          data.v.At(b, j, h, d) = nan;
      }
    }
  }
  ASSERT_GT(poisoned, 0);
  ExpectWithinPlainError(data);
}

// 256 * 256 * 128 is far past f16's largest value (65504): the products
// and their sums must be fp32. All scores equal, so out is V exactly.
TEST(LowPrecision, LargeValuesDoNotOverflow) {
  for (DType dtype : {DType::kF16, DType::kBF16}) {
    Case c = Dense(dtype, dtype, dtype);
    c.seq_q = 9, c.seq_k = 200, c.head_dim = c.head_dim_v = 128;
    CaseData data(c);
    for (Buffer<float>* t : {&data.q, &data.k, &data.v}) {
      for (std::int64_t index = 0;
           index < static_cast<std::int64_t>(t->storage.size()); ++index) {
        if (!std::isnan(t->storage[index])) t->storage[index] = 256.0f;
      }
    }
    ExpectWithinPlainError(data);
    for (std::int64_t target : simd::RunnableTargets()) {
      simd::ScopedTarget only(target);
      for (simd::Bf16Path path : PathsFor(c, target)) {
        simd::ScopedBf16Path forced(path);
        ref::ForwardResult ref;
        ASSERT_TRUE(RunReference(data, &ref).ok());
        const Comparison got = RunFastAndCompare(data, ref);
        for (float value : got.out_values) ASSERT_EQ(value, 256.0f);
        const double expected_lse =
            256.0 * 256.0 * 128.0 / std::sqrt(128.0) + std::log(200.0);
        for (float lse : got.lse_values)
          EXPECT_NEAR(lse, expected_lse, 1e-6 * expected_lse);
      }
    }
  }
}

// Q = K = 0: every weight is exactly 1/N, so out is the mean of V up to the
// final rounding to the dtype (one unit in the last place).
TEST(LowPrecision, ZeroScoresGiveMeanOfValues) {
  for (DType dtype : {DType::kBF16, DType::kF16}) {
    Case c = Dense(dtype, dtype, dtype);
    c.seq_q = 3, c.seq_k = 5000, c.heads_q = c.heads_kv = 1;
    c.head_dim = 64, c.head_dim_v = 48;
    CaseData data(c);
    for (std::int64_t j = 0; j < c.seq_k; ++j) {
      for (std::int64_t d = 0; d < c.head_dim; ++d)
        data.k.At(0, j, 0, d) = 0.0f;
    }
    for (std::int64_t i = 0; i < c.seq_q; ++i) {
      for (std::int64_t d = 0; d < c.head_dim; ++d)
        data.q.At(0, i, 0, d) = 0.0f;
    }
    data.NarrowInputs();
    std::vector<double> mean(c.head_dim_v, 0.0);
    for (std::int64_t j = 0; j < c.seq_k; ++j) {
      for (std::int64_t d = 0; d < c.head_dim_v; ++d)
        mean[d] += data.v.At(0, j, 0, d);
    }
    for (double& m : mean) m /= static_cast<double>(c.seq_k);
    ref::ForwardResult ref;
    ASSERT_TRUE(RunReference(data, &ref).ok());
    for (std::int64_t target : simd::RunnableTargets()) {
      simd::ScopedTarget only(target);
      for (simd::Bf16Path path : PathsFor(c, target)) {
        simd::ScopedBf16Path forced(path);
        SCOPED_TRACE(std::string(simd::TargetName(target)) + " " +
                     PathName(path));
        const Comparison got = RunFastAndCompare(data, ref);
        ASSERT_TRUE(got.status.ok());
        for (std::int64_t i = 0; i < c.seq_q; ++i) {
          for (std::int64_t d = 0; d < c.head_dim_v; ++d) {
            const double ulp = std::abs(mean[d]) * 2.0 * UnitRoundoff(dtype);
            EXPECT_NEAR(got.out_values[i * c.head_dim_v + d], mean[d],
                        ulp + 0x1p-24);
          }
        }
      }
    }
  }
}

// The calibrated choice is one of the two paths, stable across calls, and
// the dot-product path only where the CPU has it.
TEST(LowPrecision, CalibrationPicksARunnablePath) {
  const simd::Bf16Path chosen = simd::ChosenBf16Path();
  EXPECT_NE(chosen, simd::Bf16Path::kAuto);
  EXPECT_EQ(simd::ChosenBf16Path(), chosen);
  if (!simd::CpuHasDotBf16()) EXPECT_EQ(chosen, simd::Bf16Path::kWiden);
}

}  // namespace
}  // namespace salience::harness
