// Causal attention with grouped-query heads, tensors in torch's [B,H,N,D] memory.
#include <salience/salience.h>

#include <cstdio>
#include <vector>

int main() {
  using salience::DType;
  using salience::TensorView;
  const int batch = 1, seq = 4, heads_q = 4, heads_kv = 2, head_dim = 8;

  std::vector<float> q(batch * heads_q * seq * head_dim);
  std::vector<float> k(batch * heads_kv * seq * head_dim);
  std::vector<float> v(k.size()), out(q.size());
  for (size_t i = 0; i < q.size(); ++i) q[i] = 0.1f * (i % 7);
  for (size_t i = 0; i < k.size(); ++i) k[i] = 0.2f * (i % 5);
  for (size_t i = 0; i < v.size(); ++i) v[i] = 1.0f * (i % 3);

  const TensorView q_view =
      TensorView::Bhnd(q.data(), DType::kF32, batch, seq, heads_q, head_dim);
  const TensorView k_view =
      TensorView::Bhnd(k.data(), DType::kF32, batch, seq, heads_kv, head_dim);
  const TensorView v_view =
      TensorView::Bhnd(v.data(), DType::kF32, batch, seq, heads_kv, head_dim);
  const TensorView out_view =
      TensorView::Bhnd(out.data(), DType::kF32, batch, seq, heads_q, head_dim);

  salience::AttentionOptions options;  // scale = 1 / sqrt(head_dim)
  options.causal = salience::Causal::kBottomRight;
  const salience::Status status =
      salience::AttentionForward(q_view, k_view, v_view, out_view, options);
  if (!status.ok()) {
    std::fprintf(stderr, "%s\n", status.ToString().c_str());
    return 1;
  }
  for (int i = 0; i < seq; ++i) {  // head 0: query i sees keys 0..i
    std::printf("out[0, %d, 0, :3] = %.4f %.4f %.4f\n", i,
                out[out_view.Offset(0, i, 0, 0)],
                out[out_view.Offset(0, i, 0, 1)],
                out[out_view.Offset(0, i, 0, 2)]);
  }
  return 0;
}
