// Linear layers of the model code: y = x W^T + b, torch's nn.Linear, with W
// [out_features, in_features] row-major as checkpoints store it. Every model
// (BERT today; ViT and Whisper next) runs its matrix products through this
// one class, so the product kernel behind it is chosen in one place.
//
// A Linear owns a copy of its weights made once at load (the layout the
// product reads may differ from the checkpoint's), so the file's mapping
// may be released after Create.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "salience/status.h"

namespace salience::model {

// What a product does with y beside writing x W^T + b.
enum class Epilogue {
  kStore,       // y = x W^T + b
  kAccumulate,  // y += x W^T + b   (a residual connection held in y)
};

class Linear {
 public:
  Linear() = default;

  // weight [out_features, in_features] row-major; bias [out_features] or
  // empty (no bias). kInvalidArgument when a size does not match.
  static Status Create(std::span<const float> weight,
                       std::span<const float> bias, std::int64_t out_features,
                       std::int64_t in_features, Linear* linear);

  // y[r, :] = x[r, :] W^T + b for r < rows; x has row stride x_stride (>=
  // in_features), y row stride y_stride (>= out_features), both in floats.
  // num_threads 0 = all cores (1 inside a parallel region of the caller).
  void Forward(const float* x, std::int64_t rows, std::int64_t x_stride,
               float* y, std::int64_t y_stride, Epilogue epilogue,
               int num_threads) const;

  std::int64_t in_features() const { return in_features_; }
  std::int64_t out_features() const { return out_features_; }
  const float* bias() const { return bias_.empty() ? nullptr : bias_.data(); }

 private:
  std::int64_t out_features_ = 0, in_features_ = 0;
  std::vector<float> weight_, bias_;
};

}  // namespace salience::model
