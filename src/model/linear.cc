#include "model/linear.h"

#include <cblas.h>

#include <algorithm>
#include <string>

namespace salience::model {

Status Linear::Create(std::span<const float> weight,
                      std::span<const float> bias, std::int64_t out_features,
                      std::int64_t in_features, Linear* linear) {
  if (out_features <= 0 || in_features <= 0 ||
      static_cast<std::int64_t>(weight.size()) != out_features * in_features)
    return Status(StatusCode::kInvalidArgument,
                  "Linear: weight has " + std::to_string(weight.size()) +
                      " elements, expected " + std::to_string(out_features) +
                      " x " + std::to_string(in_features));
  if (!bias.empty() && static_cast<std::int64_t>(bias.size()) != out_features)
    return Status(StatusCode::kInvalidArgument,
                  "Linear: bias has " + std::to_string(bias.size()) +
                      " elements, expected " + std::to_string(out_features));
  linear->out_features_ = out_features;
  linear->in_features_ = in_features;
  linear->weight_.assign(weight.begin(), weight.end());
  linear->bias_.assign(bias.begin(), bias.end());
  return Status::Ok();
}

void Linear::Forward(const float* x, std::int64_t rows, std::int64_t x_stride,
                     float* y, std::int64_t y_stride, Epilogue epilogue,
                     int num_threads) const {
  if (rows == 0) return;
  if (num_threads > 0) openblas_set_num_threads(num_threads);
  // The bias goes in first, so one product with beta = 1 adds x W^T to it
  // (and to the residual already in y for kAccumulate).
  if (!bias_.empty()) {
    for (std::int64_t r = 0; r < rows; ++r) {
      float* row = y + r * y_stride;
      if (epilogue == Epilogue::kStore) {
        std::copy(bias_.begin(), bias_.end(), row);
      } else {
        for (std::int64_t c = 0; c < out_features_; ++c) row[c] += bias_[c];
      }
    }
  }
  const float beta =
      (epilogue == Epilogue::kAccumulate || !bias_.empty()) ? 1.0f : 0.0f;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, static_cast<int>(rows),
              static_cast<int>(out_features_), static_cast<int>(in_features_),
              1.0f, x, static_cast<int>(x_stride), weight_.data(),
              static_cast<int>(in_features_), beta, y,
              static_cast<int>(y_stride));
}

}  // namespace salience::model
