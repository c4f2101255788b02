// Random problems for the kernel batteries: every feature of a Case mixed,
// drawn from one seed, on sizes that straddle SIMD widths and tile edges.
#pragma once

#include <cstdint>
#include <random>

#include "harness.h"

namespace salience::harness {

// Sizes that straddle SIMD widths and tile edges: 1, primes, powers of two
// and one past them.
inline constexpr std::int64_t kSeqLens[] = {1,   7,   63,  97,  113,
                                     128, 203, 256, 513, 1025};
inline constexpr std::int64_t kHeadDims[] = {1, 8, 32, 59, 64, 111, 128, 256};
inline constexpr MaskForm kMaskForms[] = {MaskForm::kFull,
                                   MaskForm::kSharedAcrossBatch,
                                   MaskForm::kSharedAcrossAll,
                                   MaskForm::kKeyPadding,
                                   MaskForm::kHeadStrideZero,
                                   MaskForm::kQueryRows,
                                   MaskForm::kTransposed};
inline constexpr Layout kLayouts[] = {Layout::kBnhd, Layout::kBhnd, Layout::kStrided,
                               Layout::kHeadsInner};

template <typename T, std::size_t N>
T Pick(std::mt19937_64& rng, const T (&choices)[N]) {
  return choices[std::uniform_int_distribution<std::size_t>(0, N - 1)(rng)];
}

int Uniform(std::mt19937_64& rng, int low, int high);
bool Chance(std::mt19937_64& rng, double p);

// A random valid case whose reference forward costs at most about `budget`
// multiply-adds, so a battery's runtime stays bounded.
Case RandomCase(std::mt19937_64& rng, double budget);

}  // namespace salience::harness
