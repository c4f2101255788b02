// Dropout masks from a counter-based generator, shared by every kernel.
//
// Philox4x32-10 (Salmon et al., "Parallel random numbers: as easy as 1, 2,
// 3", SC 2011) maps a 128-bit counter and a 64-bit key to four 32-bit words
// with no state, so any element's draw is computed where it is needed, in
// any order: the forward and the backward regenerate the same mask, and
// threads never share a generator. salience's counter for the weight of
// query row i and key j of head h in sequence b is
//
//   counter = { j / 4, i, b * heads_q + h, low 32 bits of offset }
//   key     = { low 32 bits of seed, high 32 bits of seed ^ high 32 bits of offset }
//
// and word j % 4 of the result decides: the weight is kept when the word is
// at least threshold = round(p * 2^32). b is the tensor batch index (the
// sequence index for packed varlen batches); i and j are local to the
// sequence.
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

#include "salience/attention.h"

namespace salience::core {

using PhiloxWords = std::array<std::uint32_t, 4>;

// Ten rounds of Philox4x32 (multipliers and Weyl key increments of the
// paper; known-answer tested against Random123's vectors).
inline PhiloxWords Philox4x32(PhiloxWords ctr, std::uint32_t key0, std::uint32_t key1) {
  constexpr std::uint32_t kMul0 = 0xD2511F53u, kMul1 = 0xCD9E8D57u;
  constexpr std::uint32_t kWeyl0 = 0x9E3779B9u, kWeyl1 = 0xBB67AE85u;
  for (int round = 0; round < 10; ++round) {
    const std::uint64_t p0 = std::uint64_t{kMul0} * ctr[0];
    const std::uint64_t p1 = std::uint64_t{kMul1} * ctr[2];
    ctr = {static_cast<std::uint32_t>(p1 >> 32) ^ ctr[1] ^ key0,
           static_cast<std::uint32_t>(p1),
           static_cast<std::uint32_t>(p0 >> 32) ^ ctr[3] ^ key1,
           static_cast<std::uint32_t>(p0)};
    key0 += kWeyl0;
    key1 += kWeyl1;
  }
  return ctr;
}

// The dropout of one call: which weights survive, and their scale.
class Dropout {
 public:
  explicit Dropout(const AttentionOptions& o)
      : enabled_(o.dropout_p > 0.0f),
        keep_scale_(o.dropout_p > 0.0f ? 1.0f / (1.0f - o.dropout_p) : 1.0f),
        threshold_(Threshold(o.dropout_p)),
        key0_(static_cast<std::uint32_t>(o.dropout_seed)),
        key1_(static_cast<std::uint32_t>(o.dropout_seed >> 32) ^
              static_cast<std::uint32_t>(o.dropout_offset >> 32)),
        offset_(static_cast<std::uint32_t>(o.dropout_offset)) {}

  bool enabled() const { return enabled_; }
  // 1 / (1 - p): the factor applied to kept weights.
  float keep_scale() const { return keep_scale_; }

  // The four words deciding keys 4 * key_group .. 4 * key_group + 3 of query
  // row i of head h (of heads_q) in batch entry b.
  PhiloxWords Words(std::int64_t b, std::int64_t heads_q, std::int64_t h,
                    std::int64_t i, std::int64_t key_group) const {
    const PhiloxWords ctr = {static_cast<std::uint32_t>(key_group),
                             static_cast<std::uint32_t>(i),
                             static_cast<std::uint32_t>(b * heads_q + h), offset_};
    return Philox4x32(ctr, key0_, key1_);
  }
  bool Keeps(std::uint32_t word) const { return word >= threshold_; }
  bool Keeps(std::int64_t b, std::int64_t heads_q, std::int64_t h,
             std::int64_t i, std::int64_t j) const {
    return Keeps(Words(b, heads_q, h, i, j / 4)[j % 4]);
  }

 private:
  static std::uint32_t Threshold(float p) {
    if (!(p > 0.0f)) return 0;
    const double scaled = std::round(std::ldexp(static_cast<double>(p), 32));
    return scaled >= 4294967295.0 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(scaled);
  }

  bool enabled_;
  float keep_scale_;
  std::uint32_t threshold_;
  std::uint32_t key0_, key1_, offset_;
};

}  // namespace salience::core
