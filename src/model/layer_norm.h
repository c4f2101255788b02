// LayerNorm over rows, with the sublayer's bias added first, vectorized with
// Highway: the closing pass of every BERT sublayer.
//
//   v = x[r, :] + bias
//   x[r, :] = (v - mean(v)) / sqrt(var(v) + eps) * gamma + beta
//
// The residual itself is already in x: the encoder's output projections
// accumulate into x (GEMM beta = 1), so this one pass adds the bias,
// normalizes and writes the row back. Statistics are two-pass in fp32
// vector lanes: the mean of v - v[0], then the variance of v - mean, so that
// their rounding scales with the row's spread rather than its offset from
// zero (a one-pass E[v^2] - mean^2 would cancel), and eps (1e-12 in BERT)
// never decides the result for real activations.
#pragma once

#include <cstdint>

namespace salience::model {

// x [rows, width] row-major; bias [width] or null; gamma, beta [width].
// Rows are split across OpenMP threads (one inside a parallel region).
void BiasLayerNormInPlace(float* x, std::int64_t rows, std::int64_t width,
                          const float* bias, const float* gamma,
                          const float* beta, float eps);

}  // namespace salience::model
