// The reference backward against central finite differences of the
// reference forward, on small problems covering every option; and the
// dropout definition (Philox known answers, the dropped share, determinism,
// and the forward's use of the mask).
//
// The loss is L = sum(d_out * out). The reference forward accumulates in
// fp64 and returns fp64 outputs, so L is exact to ~1e-16 relative; each
// input element is moved by +-h (h = 2^-10, the fp32 neighbour actually
// reached is used as the step) and (L(x+h) - L(x-h)) / 2h approximates
// dL/dx to O(h^2) ~ 1e-6 relative.
#include "kernels/ref/backward_ref.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "core/dropout.h"
#include "core/validate.h"
#include "harness.h"
#include "kernels/ref/forward_ref.h"
#include "salience/attention.h"

namespace salience::harness {
namespace {

constexpr double kNegInf = -std::numeric_limits<double>::infinity();
constexpr double kStep = 1.0 / 1024.0;

// Calls f(b, n, h, d) for every logical index of a rank-4 view.
void ForEach(const TensorView& t,
             const std::function<void(std::int64_t, std::int64_t, std::int64_t,
                                      std::int64_t)>& f) {
  for (std::int64_t b = 0; b < t.shape[0]; ++b) {
    for (std::int64_t n = 0; n < t.shape[1]; ++n) {
      for (std::int64_t h = 0; h < t.shape[2]; ++h) {
        for (std::int64_t d = 0; d < t.shape[3]; ++d) f(b, n, h, d);
      }
    }
  }
}

// A case's tensors plus the backward's: d_out (random), lse from the
// forward, and contiguous [B,N,H,D] gradients.
struct BackwardData {
  explicit BackwardData(const Case& c) : data(c) {
    const TensorView& out = data.out.view;
    const auto bnhd = [](std::vector<float>& storage, const TensorView& like) {
      storage.assign(
          like.shape[0] * like.shape[1] * like.shape[2] * like.shape[3],
          -7.0f);  // a sentinel every element must overwrite
      return TensorView::Bnhd(storage.data(), DType::kF32, like.shape[0],
                              like.shape[1], like.shape[2], like.shape[3]);
    };
    d_out = bnhd(d_out_storage, out);
    dq = bnhd(dq_storage, data.q.view);
    dk = bnhd(dk_storage, data.k.view);
    dv = bnhd(dv_storage, data.v.view);
    std::mt19937_64 rng(c.seed + 100);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    for (float& x : d_out_storage) x = normal(rng);
    // The reference ignores out and lse; the forward fills them anyway so
    // the arguments are what a real caller passes.
    EXPECT_TRUE(AttentionForwardReference(data.q.view, data.k.view, data.v.view,
                                          out, data.options, &data.lse.view)
                    .ok());
  }

  core::Problem Validated() {
    core::Problem problem;
    const Status status = core::ValidateBackward(
        data.q.view, data.k.view, data.v.view, data.out.view, d_out,
        data.lse.view, dq, dk, dv, data.options, &problem);
    EXPECT_TRUE(status.ok()) << status.ToString();
    return problem;
  }

  // L = sum(d_out * out) by the fp64 reference forward.
  double Loss() {
    ref::ForwardResult result;
    EXPECT_TRUE(RunReference(data, &result).ok());
    double loss = 0.0;
    for (std::size_t n = 0; n < result.out.size(); ++n) {
      loss += static_cast<double>(d_out_storage[n]) * result.out[n];
    }
    return loss;
  }

  CaseData data;
  std::vector<float> d_out_storage, dq_storage, dk_storage, dv_storage;
  TensorView d_out, dq, dk, dv;
};

// Central differences of L over every element of `t` (a view into the
// case's own buffer), in the backward result's [B,N,H,D] order.
std::vector<double> FiniteDifferences(BackwardData& bwd, Buffer<float>& t) {
  std::vector<double> grad;
  ForEach(t.view,
          [&](std::int64_t b, std::int64_t n, std::int64_t h, std::int64_t d) {
            float& x = t.At(b, n, h, d);
            const float saved = x;
            x = static_cast<float>(saved + kStep);
            const double up = static_cast<double>(x) - saved;
            const double loss_up = bwd.Loss();
            x = static_cast<float>(saved - kStep);
            const double down = static_cast<double>(x) - saved;
            const double loss_down = bwd.Loss();
            x = saved;
            grad.push_back((loss_up - loss_down) / (up - down));
          });
  return grad;
}

// max |a - b| / max(1, max |b|); also returns max |b| through `magnitude`.
double MaxError(const std::vector<double>& a, const std::vector<double>& b,
                double* magnitude) {
  double error = 0.0, largest = 0.0;
  for (std::size_t n = 0; n < b.size(); ++n) {
    error = std::max(error, std::abs(a[n] - b[n]));
    largest = std::max(largest, std::abs(b[n]));
  }
  *magnitude = largest;
  return error / std::max(1.0, largest);
}

// The backward of a case matches finite differences for dq, dk and dv.
void ExpectMatchesFiniteDifferences(const Case& c) {
  BackwardData bwd(c);
  const ref::BackwardResult grads = ref::Backward(bwd.Validated());
  const std::array<std::pair<const char*, Buffer<float>*>, 3> inputs = {
      {{"dq", &bwd.data.q}, {"dk", &bwd.data.k}, {"dv", &bwd.data.v}}};
  const std::array<const std::vector<double>*, 3> results = {
      &grads.dq, &grads.dk, &grads.dv};
  for (int t = 0; t < 3; ++t) {
    const std::vector<double> numeric =
        FiniteDifferences(bwd, *inputs[t].second);
    double magnitude = 0.0;
    const double error = MaxError(*results[t], numeric, &magnitude);
    EXPECT_LT(error, 2e-6) << inputs[t].first << ": " << Describe(c);
    // A gradient that is zero everywhere would pass trivially.
    EXPECT_GT(magnitude, 1e-2) << inputs[t].first << ": " << Describe(c);
  }
}

Case Small() {
  Case c;
  c.batch = 2, c.seq_q = 5, c.seq_k = 6;
  c.heads_q = 2, c.heads_kv = 2, c.head_dim = 4, c.head_dim_v = 4;
  return c;
}

TEST(BackwardRef, Dense) { ExpectMatchesFiniteDifferences(Small()); }

TEST(BackwardRef, LayoutsAndScale) {
  for (const Layout layout :
       {Layout::kBhnd, Layout::kStrided, Layout::kHeadsInner}) {
    Case c = Small();
    c.layout = layout;
    c.scale = 0.7f;
    ExpectMatchesFiniteDifferences(c);
  }
}

TEST(BackwardRef, GroupedAndMultiQueryHeads) {
  Case gqa = Small();
  gqa.heads_q = 4, gqa.heads_kv = 2;
  ExpectMatchesFiniteDifferences(gqa);
  Case mqa = Small();
  mqa.heads_q = 3, mqa.heads_kv = 1, mqa.head_dim_v = 6;  // and Dv != D
  ExpectMatchesFiniteDifferences(mqa);
}

TEST(BackwardRef, CausalBothAlignments) {
  for (const Causal causal : {Causal::kTopLeft, Causal::kBottomRight}) {
    for (const auto& [seq_q, seq_k] : {std::pair{5, 7}, std::pair{7, 4}}) {
      Case c = Small();
      c.causal = causal, c.seq_q = seq_q, c.seq_k = seq_k;
      ExpectMatchesFiniteDifferences(c);
    }
  }
}

TEST(BackwardRef, SlidingWindows) {
  Case c = Small();
  c.seq_q = 6, c.seq_k = 8, c.window_left = 2, c.window_right = 1;
  ExpectMatchesFiniteDifferences(c);
  c.window_align = Align::kTopLeft, c.window_right = 0;
  ExpectMatchesFiniteDifferences(c);
}

TEST(BackwardRef, SoftcapAlibiAndMasks) {
  Case softcap = Small();
  softcap.softcap = 1.5f, softcap.value_scale = 2.0f;  // tanh well bent
  ExpectMatchesFiniteDifferences(softcap);
  for (const Alibi alibi : {Alibi::kPerHead, Alibi::kPerBatch}) {
    Case c = Small();
    c.alibi = alibi;
    ExpectMatchesFiniteDifferences(c);
  }
  for (const MaskKind mask : {MaskKind::kBool, MaskKind::kAdditive}) {
    Case c = Small();
    c.mask = mask, c.mask_hidden_share = 0.3;
    ExpectMatchesFiniteDifferences(c);
  }
}

TEST(BackwardRef, PaddingAndVarlen) {
  Case padded = Small();
  padded.seqlens_q = {4, 5}, padded.seqlens_k = {3, 6};
  ExpectMatchesFiniteDifferences(padded);
  Case varlen = Small();  // sequences of (q, k) lengths (3, 2), (0, 3), (4, 5)
  varlen.batch = 3, varlen.seq_q = 8, varlen.seq_k = 11;
  varlen.cu_seqlens_q = {0, 3, 3, 7}, varlen.cu_seqlens_k = {0, 2, 5, 10};
  varlen.causal = Causal::kBottomRight, varlen.alibi = Alibi::kPerBatch;
  ExpectMatchesFiniteDifferences(varlen);
}

TEST(BackwardRef, Dropout) {
  Case c = Small();
  c.heads_q = 4, c.heads_kv = 2, c.seq_k = 9;
  BackwardData probe(c);
  for (const float p : {0.3f, 0.6f}) {
    BackwardData bwd(c);  // the same tensors as probe's (the same seed)
    bwd.data.options.dropout_p = p;
    bwd.data.options.dropout_seed = 0x123456789ABCDEFull;
    bwd.data.options.dropout_offset = 77;
    const ref::BackwardResult grads = ref::Backward(bwd.Validated());
    double magnitude = 0.0;
    EXPECT_LT(
        MaxError(grads.dq, FiniteDifferences(bwd, bwd.data.q), &magnitude),
        2e-6);
    EXPECT_LT(
        MaxError(grads.dk, FiniteDifferences(bwd, bwd.data.k), &magnitude),
        2e-6);
    EXPECT_LT(
        MaxError(grads.dv, FiniteDifferences(bwd, bwd.data.v), &magnitude),
        2e-6);
    // Dropout changes the gradients: they are not the undropped ones.
    const ref::BackwardResult plain = ref::Backward(probe.Validated());
    EXPECT_GT(MaxError(grads.dv, plain.dv, &magnitude), 1e-2);
  }
}

// Rows that see no key and keys no row sees: exactly zero gradients, and the
// public entry point writes every element (the -7 sentinels are gone).
TEST(BackwardRef, HiddenRowsAndUnseenKeysGetZero) {
  Case c = Small();
  c.seq_q = 7, c.seq_k = 4, c.causal = Causal::kBottomRight;  // rows 0-2 blind
  c.seqlens_k = {4, 0};  // batch entry 1 sees nothing at all
  BackwardData bwd(c);
  const Status status = AttentionBackwardReference(
      bwd.data.q.view, bwd.data.k.view, bwd.data.v.view, bwd.data.out.view,
      bwd.d_out, bwd.data.lse.view, bwd.dq, bwd.dk, bwd.dv, bwd.data.options);
  ASSERT_TRUE(status.ok()) << status.ToString();
  const ref::BackwardResult grads = ref::Backward(bwd.Validated());
  for (std::int64_t h = 0; h < c.heads_q; ++h) {
    for (std::int64_t d = 0; d < c.head_dim; ++d) {
      for (std::int64_t i = 0; i < 3; ++i) {
        EXPECT_EQ(bwd.dq_storage[((0 * 7 + i) * 2 + h) * 4 + d], 0.0f);
      }
      for (std::int64_t i = 0; i < 7; ++i) {
        EXPECT_EQ(bwd.dq_storage[((1 * 7 + i) * 2 + h) * 4 + d], 0.0f);
      }
    }
  }
  for (std::size_t n = 4 * 2 * 4; n < bwd.dk_storage.size(); ++n) {
    EXPECT_EQ(bwd.dk_storage[n], 0.0f);  // batch entry 1
    EXPECT_EQ(bwd.dv_storage[n], 0.0f);
  }
  // The stored fp32 values are the fp64 result rounded.
  for (std::size_t n = 0; n < grads.dq.size(); ++n) {
    EXPECT_EQ(bwd.dq_storage[n], static_cast<float>(grads.dq[n]));
  }
  for (std::size_t n = 0; n < grads.dk.size(); ++n) {
    EXPECT_EQ(bwd.dk_storage[n], static_cast<float>(grads.dk[n]));
    EXPECT_EQ(bwd.dv_storage[n], static_cast<float>(grads.dv[n]));
  }
  // Live rows do get gradients.
  EXPECT_NE(bwd.dq_storage[((0 * 7 + 6) * 2 + 0) * 4 + 0], 0.0f);
}

TEST(BackwardRef, RejectsBadArguments) {
  BackwardData bwd(Small());
  TensorView dv = bwd.dv;
  dv.shape[3] = 3;
  const Status status = AttentionBackwardReference(
      bwd.data.q.view, bwd.data.k.view, bwd.data.v.view, bwd.data.out.view,
      bwd.d_out, bwd.data.lse.view, bwd.dq, bwd.dk, dv, bwd.data.options);
  EXPECT_EQ(status.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(
      status.message().find("dv.shape[3] (head_dim_v): expected 4 (v.shape[3]), got 3"),
      std::string::npos)
      << status.ToString();
}

// ---------------------------------------------------------------------------
// Dropout: the Philox generator and the mask it defines.

TEST(Dropout, PhiloxKnownAnswers) {
  // Random123's kat_vectors for philox4x32_10.
  EXPECT_EQ(
      core::Philox4x32({0, 0, 0, 0}, 0, 0),
      (core::PhiloxWords{0x6627e8d5u, 0xe169c58du, 0xbc57ac4cu, 0x9b00dbd8u}));
  EXPECT_EQ(
      core::Philox4x32({0xffffffffu, 0xffffffffu, 0xffffffffu, 0xffffffffu},
                       0xffffffffu, 0xffffffffu),
      (core::PhiloxWords{0x408f276du, 0x41c83b0eu, 0xa20bc7c6u, 0x6d5451fdu}));
}

// Kept weights of a [heads 4, rows 128, keys 256] block under `options`.
std::vector<bool> MaskOf(const AttentionOptions& options) {
  const core::Dropout dropout(options);
  std::vector<bool> kept;
  for (std::int64_t h = 0; h < 4; ++h) {
    for (std::int64_t i = 0; i < 128; ++i) {
      for (std::int64_t j = 0; j < 256; ++j) {
        kept.push_back(dropout.Keeps(1, 4, h, i, j));
      }
    }
  }
  return kept;
}

double DroppedShare(const std::vector<bool>& kept) {
  return static_cast<double>(std::count(kept.begin(), kept.end(), false)) /
         static_cast<double>(kept.size());
}

double DifferingShare(const std::vector<bool>& a, const std::vector<bool>& b) {
  std::int64_t differ = 0;
  for (std::size_t n = 0; n < a.size(); ++n) differ += a[n] != b[n];
  return static_cast<double>(differ) / static_cast<double>(a.size());
}

TEST(Dropout, DroppedShareMatchesProbability) {
  for (const float p : {0.05f, 0.1f, 0.5f, 0.9f}) {
    AttentionOptions options;
    options.dropout_p = p;
    options.dropout_seed = 42;
    const core::Dropout dropout(options);
    EXPECT_TRUE(dropout.enabled());
    EXPECT_FLOAT_EQ(dropout.keep_scale(), 1.0f / (1.0f - p));
    EXPECT_NEAR(DroppedShare(MaskOf(options)), p, 0.01) << p;  // 131072 draws
  }
  AttentionOptions off;
  EXPECT_FALSE(core::Dropout(off).enabled());
  EXPECT_EQ(core::Dropout(off).keep_scale(), 1.0f);
  EXPECT_EQ(DroppedShare(MaskOf(off)), 0.0);
}

TEST(Dropout, DeterministicAndKeyedBySeedAndOffset) {
  AttentionOptions options;
  options.dropout_p = 0.5f;
  options.dropout_seed = 7;
  options.dropout_offset = 3;
  const std::vector<bool> mask = MaskOf(options);
  EXPECT_EQ(MaskOf(options), mask);
  // Another seed, another offset (low or high word): about half the
  // decisions differ for independent masks at p = 0.5.
  for (const auto& [seed, offset] :
       {std::pair<std::uint64_t, std::uint64_t>{8, 3},
        {7ull | (1ull << 40), 3},
        {7, 4},
        {7, 3ull | (1ull << 33)}}) {
    AttentionOptions other = options;
    other.dropout_seed = seed, other.dropout_offset = offset;
    EXPECT_NEAR(DifferingShare(MaskOf(other), mask), 0.5, 0.02)
        << seed << " " << offset;
  }
}

// The reference forward with dropout is the softmax of the undropped scores,
// with dropped weights zeroed and kept ones scaled by 1 / (1 - p), computed
// here explicitly; lse is the undropped one.
TEST(Dropout, ForwardAppliesTheMaskToTheWeights) {
  Case c = Small();
  c.heads_q = 4, c.heads_kv = 2, c.seq_q = 9, c.seq_k = 33;
  CaseData data(c);
  data.options.dropout_p = 0.25f;
  data.options.dropout_seed = 99;
  data.options.dropout_offset = 5;
  ref::ForwardResult dropped;
  ASSERT_TRUE(RunReference(data, &dropped).ok());
  const core::Dropout dropout(data.options);
  const double scale = 1.0 / std::sqrt(static_cast<double>(c.head_dim));
  std::int64_t dropped_count = 0;
  for (std::int64_t b = 0; b < c.batch; ++b) {
    for (std::int64_t h = 0; h < c.heads_q; ++h) {
      for (std::int64_t i = 0; i < c.seq_q; ++i) {
        std::vector<double> weights(c.seq_k);
        double row_max = kNegInf, row_sum = 0.0;
        for (std::int64_t j = 0; j < c.seq_k; ++j) {
          double dot = 0.0;
          for (std::int64_t d = 0; d < c.head_dim; ++d) {
            dot += static_cast<double>(data.q.At(b, i, h, d)) *
                   data.k.At(b, j, h / 2, d);
          }
          weights[j] = static_cast<float>(scale) * dot;
          row_max = std::max(row_max, weights[j]);
        }
        for (double& w : weights) row_sum += (w = std::exp(w - row_max));
        EXPECT_NEAR(dropped.lse[(b * c.heads_q + h) * c.seq_q + i],
                    row_max + std::log(row_sum), 1e-12);
        for (std::int64_t col = 0; col < c.head_dim_v; ++col) {
          double expected = 0.0;
          for (std::int64_t j = 0; j < c.seq_k; ++j) {
            if (!dropout.Keeps(b, c.heads_q, h, i, j)) {
              dropped_count += col == 0;
              continue;
            }
            expected += weights[j] / row_sum * dropout.keep_scale() *
                        data.v.At(b, j, h / 2, col);
          }
          EXPECT_NEAR(
              dropped.out[((b * c.seq_q + i) * c.heads_q + h) * c.head_dim_v +
                          col],
              expected, 1e-12);
        }
      }
    }
  }
  const double share = static_cast<double>(dropped_count) /
                       (c.batch * c.heads_q * c.seq_q * c.seq_k);
  EXPECT_NEAR(share, 0.25, 0.05);  // 2376 draws
}

}  // namespace
}  // namespace salience::harness
