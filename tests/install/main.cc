// Runs the installed library on a problem small enough to solve by hand.
//
// One head, head_dim 2, scale 1, causal (top-left), two queries and two keys:
//   q = [[1, 0], [1, 0]],  k = [[1, 0], [0, 1]],  v = [[1, 2], [3, 4]]
// Query 0 sees key 0 only: out = v[0] = [1, 2], lse = 1.
// Query 1 sees both keys with scores [1, 0]: weights e/(e+1), 1/(e+1), so
//   out = [1, 2] + 2/(e+1) * [1, 1] = [1.5378828, 2.5378828],
//   lse = log(e + 1) = 1.3132617.
#include <salience/salience.h>

#include <cmath>
#include <cstdio>

int main() {
  using salience::DType;
  using salience::TensorView;
  float q[] = {1, 0, 1, 0};
  float k[] = {1, 0, 0, 1};
  float v[] = {1, 2, 3, 4};
  float out[4] = {};
  float lse[2] = {};
  const TensorView q_view = TensorView::Bnhd(q, DType::kF32, 1, 2, 1, 2);
  const TensorView k_view = TensorView::Bnhd(k, DType::kF32, 1, 2, 1, 2);
  const TensorView v_view = TensorView::Bnhd(v, DType::kF32, 1, 2, 1, 2);
  const TensorView out_view = TensorView::Bnhd(out, DType::kF32, 1, 2, 1, 2);
  const TensorView lse_view =
      TensorView::Contiguous(lse, DType::kF32, 3, {1, 1, 2, 0});

  salience::AttentionOptions options;
  options.scale = 1.0f;
  options.causal = salience::Causal::kTopLeft;
  const salience::Status status = salience::AttentionForward(
      q_view, k_view, v_view, out_view, options, &lse_view);
  if (!status.ok()) {
    std::fprintf(stderr, "AttentionForward: %s\n", status.ToString().c_str());
    return 1;
  }

  const double e = std::exp(1.0);
  const double expected_out[] = {1, 2, 1 + 2 / (e + 1), 2 + 2 / (e + 1)};
  const double expected_lse[] = {1, std::log(e + 1)};
  int wrong = 0;
  for (int i = 0; i < 4; ++i) {
    if (std::fabs(out[i] - expected_out[i]) > 1e-5) {
      std::fprintf(stderr, "out[%d]: expected %.7f, got %.7f\n", i,
                   expected_out[i], out[i]);
      ++wrong;
    }
  }
  for (int i = 0; i < 2; ++i) {
    if (std::fabs(lse[i] - expected_lse[i]) > 1e-5) {
      std::fprintf(stderr, "lse[%d]: expected %.7f, got %.7f\n", i,
                   expected_lse[i], lse[i]);
      ++wrong;
    }
  }
  if (wrong != 0) return 1;
  std::printf("consumer: salience %s from the installed package: ok\n",
              SALIENCE_VERSION_STRING);
  return 0;
}
