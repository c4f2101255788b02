// salience._salience.backward: the gradients of forward(), bound like it.
//
// Takes the forward's inputs, its out and lse (as the forward returned them),
// the loss's gradient d_out, and writes dq, dk, dv in place. Every option
// must be the forward's, dropout seed and offset included, so that the
// backward regenerates the forward's dropout mask. `reference` selects the
// fp64 reference backward instead of the fused kernel.
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>

#include <cstdint>
#include <optional>
#include <string>

#include "bindings.h"

namespace salience::python {
namespace {

void Backward(const InArray& q, const InArray& k, const InArray& v,
              const InArray& out, const InArray& d_out, const InArray& lse,
              const OutArray& dq, const OutArray& dk, const OutArray& dv,
              const std::optional<InArray>& mask, std::optional<float> scale,
              const std::string& causal, std::int64_t window_left,
              std::int64_t window_right, const std::string& window_align,
              const std::optional<IndexArray>& seqlens_q,
              const std::optional<IndexArray>& seqlens_k,
              const std::optional<IndexArray>& cu_seqlens_q,
              const std::optional<IndexArray>& cu_seqlens_k,
              const std::optional<SlopeArray>& alibi_slopes, float softcap,
              float dropout_p, std::uint64_t dropout_seed,
              std::uint64_t dropout_offset, int num_threads, bool reference) {
  const TensorView q_view = ToView("q", q), k_view = ToView("k", k);
  const TensorView v_view = ToView("v", v), out_view = ToView("out", out);
  const TensorView d_out_view = ToView("d_out", d_out);
  const TensorView lse_view = ToView("lse", lse);
  const TensorView dq_view = ToView("dq", dq), dk_view = ToView("dk", dk);
  const TensorView dv_view = ToView("dv", dv);
  const AttentionOptions options =
      ToOptions({mask, scale, causal, window_left, window_right, window_align,
                 seqlens_q, seqlens_k, cu_seqlens_q, cu_seqlens_k, alibi_slopes,
                 softcap, dropout_p, dropout_seed, dropout_offset, num_threads},
                q_view.shape[0]);

  // The arrays outlive the call (this frame's arguments hold them).
  Status status;
  {
    nb::gil_scoped_release release;
    status = reference ? AttentionBackwardReference(
                             q_view, k_view, v_view, out_view, d_out_view,
                             lse_view, dq_view, dk_view, dv_view, options)
                       : AttentionBackward(q_view, k_view, v_view, out_view,
                                           d_out_view, lse_view, dq_view,
                                           dk_view, dv_view, options);
  }
  RaiseIfError(status);
}

}  // namespace

void BindBackward(nb::module_& m) {
  m.def("backward", &Backward, nb::arg("q"), nb::arg("k"), nb::arg("v"),
        nb::arg("out"), nb::arg("d_out"), nb::arg("lse"), nb::arg("dq"),
        nb::arg("dk"), nb::arg("dv"), nb::kw_only(),
        nb::arg("mask").none() = nb::none(),
        nb::arg("scale").none() = nb::none(), nb::arg("causal") = "none",
        nb::arg("window_left") = -1, nb::arg("window_right") = -1,
        nb::arg("window_align") = "bottom_right",
        nb::arg("seqlens_q").none() = nb::none(),
        nb::arg("seqlens_k").none() = nb::none(),
        nb::arg("cu_seqlens_q").none() = nb::none(),
        nb::arg("cu_seqlens_k").none() = nb::none(),
        nb::arg("alibi_slopes").none() = nb::none(), nb::arg("softcap") = 0.0f,
        nb::arg("dropout_p") = 0.0f, nb::arg("dropout_seed") = 0,
        nb::arg("dropout_offset") = 0, nb::arg("num_threads") = 0,
        nb::arg("reference") = false,
        R"doc(Attention backward into `dq`, `dk`, `dv`, in place.

q, k, v, out, the mask and every option as given to forward(); d_out
[batch, seq_q, heads_q, head_dim_v] is the loss's gradient of out, lse
[batch, heads_q, seq_q] float32 the forward's log-sum-exp; dq, dk, dv are
float32 arrays shaped like q, k, v (written whole; for grouped heads dk and
dv sum over each group's query heads). Dropout must use the forward's
dropout_p, dropout_seed and dropout_offset. `reference` selects the fp64
reference backward. The GIL is released while the kernel runs. Raises
ValueError for a bad argument, TypeError for an unsupported dtype.)doc");
}

}  // namespace salience::python
