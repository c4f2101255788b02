#include "random_case.h"

namespace salience::harness {

int Uniform(std::mt19937_64& rng, int low, int high) {
  return std::uniform_int_distribution<int>(low, high)(rng);
}

bool Chance(std::mt19937_64& rng, double p) {
  return std::uniform_real_distribution<double>(0.0, 1.0)(rng) < p;
}

namespace {

// A valid length in [0, extent], biased towards the edges 0 and extent.
std::int32_t RandomLength(std::mt19937_64& rng, std::int64_t extent) {
  switch (Uniform(rng, 0, 3)) {
    case 0:
      return 0;
    case 1:
      return static_cast<std::int32_t>(extent);
    default:
      return Uniform(rng, 0, static_cast<int>(extent));
  }
}

}  // namespace

Case RandomCase(std::mt19937_64& rng, double budget) {
  for (;;) {
    Case c;
    c.batch = Uniform(rng, 1, 3);
    c.seq_q = Pick(rng, kSeqLens), c.seq_k = Pick(rng, kSeqLens);
    c.head_dim = Pick(rng, kHeadDims);
    c.head_dim_v = Chance(rng, 0.7) ? c.head_dim : Pick(rng, kHeadDims);
    c.heads_kv = Uniform(rng, 1, 3);
    c.heads_q = c.heads_kv * Pick(rng, {1, 2, 4, 8});
    c.layout = Pick(rng, kLayouts);
    c.causal =
        Pick(rng, {Causal::kNone, Causal::kTopLeft, Causal::kBottomRight});
    if (Chance(rng, 0.3)) {
      c.window_left = Pick(rng, {-1, 0, 1, 7, 32, 100});
      c.window_right = Pick(rng, {-1, 0, 1, 7, 32, 100});
      c.window_align = Chance(rng, 0.5) ? Align::kTopLeft : Align::kBottomRight;
    }
    if (Chance(rng, 0.2)) {  // varlen: pack `batch` sequences end to end
      c.cu_seqlens_q = {0}, c.cu_seqlens_k = {0};
      for (std::int64_t s = 0; s < c.batch; ++s) {
        c.cu_seqlens_q.push_back(c.cu_seqlens_q.back() +
                                 RandomLength(rng, c.seq_q));
        c.cu_seqlens_k.push_back(c.cu_seqlens_k.back() +
                                 RandomLength(rng, c.seq_k));
      }
      c.seq_q = c.cu_seqlens_q.back() + Uniform(rng, 0, 3);
      c.seq_k = c.cu_seqlens_k.back() + Uniform(rng, 0, 3);
    } else if (Chance(rng, 0.3)) {
      for (std::int64_t b = 0; b < c.batch; ++b) {
        c.seqlens_q.push_back(RandomLength(rng, c.seq_q));
        c.seqlens_k.push_back(RandomLength(rng, c.seq_k));
      }
      if (Chance(rng, 0.3)) c.seqlens_q.clear();
    }
    if (Chance(rng, 0.35)) {
      c.mask = Chance(rng, 0.5) ? MaskKind::kBool : MaskKind::kAdditive;
      c.mask_form = Pick(rng, kMaskForms);
      c.mask_hidden_share = Pick(rng, {0.0, 0.1, 0.5, 0.95});
    }
    if (Chance(rng, 0.2)) {
      c.alibi = Chance(rng, 0.5) ? Alibi::kPerHead : Alibi::kPerBatch;
    }
    if (Chance(rng, 0.2)) c.softcap = Pick(rng, {1.0f, 5.0f, 30.0f});
    if (Chance(rng, 0.15))
      c.scale = Pick(rng, {0.0f, -0.5f, 0.05f, 0.5f, 2.0f});
    c.with_lse = Chance(rng, 0.9);
    c.num_threads = Uniform(rng, 0, 3);  // 0: all cores
    c.distribution =
        Chance(rng, 0.5) ? Distribution::kNormal : Distribution::kUniform;
    c.seed = rng();

    const double cost = static_cast<double>(c.tensor_batch()) * c.heads_q *
                        c.seq_q * c.seq_k * (c.head_dim + c.head_dim_v);
    if (cost <= budget) return c;
  }
}

}  // namespace salience::harness
