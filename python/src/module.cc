// salience._salience: the nanobind module under the Python package.
//
// forward() (here) and backward() (backward_bindings.cc) take every tensor
// as a DLPack-capable array on the CPU (torch tensors and NumPy arrays
// alike, any strides, no copy), build salience::TensorView views of them
// and call AttentionForward / AttentionBackward or their Reference variants
// with the GIL released. The Python package (python/salience) allocates the
// outputs, maps torch's and flash-attn's conventions onto the logical
// [batch, seq, heads, head_dim] axes, and calls these; the C++ library
// validates everything once, and its Status becomes a Python exception:
//
//   kInvalidArgument, kOutOfRange -> ValueError
//   kUnsupported (bf16/f16 today) -> TypeError
//   kResourceExhausted            -> MemoryError
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/string.h>
#include <omp.h>

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "bindings.h"
#include "salience/salience.h"

namespace salience::python {
namespace {

[[noreturn]] void Raise(PyObject* type, const std::string& message) {
  PyErr_SetString(type, message.c_str());
  throw nb::python_error();
}

// The C++ messages call keyword options "options.<field>"; in Python they are
// the keyword arguments of the same name.
std::string PythonMessage(std::string message) {
  constexpr std::string_view kPrefix = "options.";
  for (std::size_t at = message.find(kPrefix); at != std::string::npos;
       at = message.find(kPrefix, at)) {
    message.erase(at, kPrefix.size());
  }
  return message;
}

}  // namespace

void RaiseIfError(const salience::Status& status) {
  if (status.ok()) return;
  const std::string message = PythonMessage(status.message());
  switch (status.code()) {
    case salience::StatusCode::kUnsupported:
      Raise(PyExc_TypeError, message);
    case salience::StatusCode::kResourceExhausted:
      Raise(PyExc_MemoryError, message);
    default:
      Raise(PyExc_ValueError, message);
  }
}

namespace {

// "float64", "int32", ... for messages about dtypes the library has no name for.
std::string DlpackDTypeName(nb::dlpack::dtype dtype) {
  const char* kind = "unknown";
  switch (static_cast<nb::dlpack::dtype_code>(dtype.code)) {
    case nb::dlpack::dtype_code::Int: kind = "int"; break;
    case nb::dlpack::dtype_code::UInt: kind = "uint"; break;
    case nb::dlpack::dtype_code::Float: kind = "float"; break;
    case nb::dlpack::dtype_code::Bfloat: kind = "bfloat"; break;
    case nb::dlpack::dtype_code::Complex: kind = "complex"; break;
    case nb::dlpack::dtype_code::Bool: return "bool";
  }
  return std::string(kind) + std::to_string(dtype.bits);
}

// The library's dtype of an array; a TypeError names any other.
DType ToDType(const char* name, nb::dlpack::dtype dtype) {
  using Code = nb::dlpack::dtype_code;
  const auto code = static_cast<Code>(dtype.code);
  if (dtype.lanes == 1) {
    if (code == Code::Float && dtype.bits == 32) return DType::kF32;
    if (code == Code::Float && dtype.bits == 16) return DType::kF16;
    if (code == Code::Bfloat && dtype.bits == 16) return DType::kBF16;
    if (code == Code::Bool && dtype.bits == 8) return DType::kBool;
  }
  Raise(PyExc_TypeError,
        std::string(name) + ".dtype: expected float32, bfloat16, float16" +
            (std::string_view(name) == "mask" ? " or bool" : "") + ", got " +
            DlpackDTypeName(dtype));
}

// The rank itself is checked by the library (which names the expected rank).
template <typename Array>
TensorView ToViewOf(const char* name, const Array& array) {
  if (array.ndim() > TensorView::kMaxRank) {
    Raise(PyExc_ValueError, std::string(name) + ".rank: expected at most " +
                                std::to_string(TensorView::kMaxRank) +
                                ", got " + std::to_string(array.ndim()));
  }
  TensorView view;
  view.data = const_cast<void*>(static_cast<const void*>(array.data()));
  view.dtype = ToDType(name, array.dtype());
  view.rank = static_cast<int>(array.ndim());
  for (int axis = 0; axis < view.rank; ++axis) {
    view.shape[axis] = static_cast<std::int64_t>(array.shape(axis));
    view.strides[axis] = array.stride(axis);
  }
  return view;
}

}  // namespace

TensorView ToView(const char* name, const InArray& array) {
  return ToViewOf(name, array);
}
TensorView ToView(const char* name, const OutArray& array) {
  return ToViewOf(name, array);
}

namespace {

std::span<const std::int32_t> ToSpan(const std::optional<IndexArray>& array) {
  if (!array) return {};
  return {array->data(), array->shape(0)};
}

// The library reads an empty span as "not given"; an empty array given by
// the caller must not silently mean that.
void CheckNotEmpty(const char* name, const std::optional<IndexArray>& array,
                   std::size_t at_least, const char* what) {
  if (array && array->shape(0) < at_least) {
    Raise(PyExc_ValueError, std::string(name) + ": expected " + what +
                                ", got " + std::to_string(array->shape(0)) +
                                " entries");
  }
}

salience::Causal ToCausal(const std::string& causal) {
  if (causal == "none") return salience::Causal::kNone;
  if (causal == "top_left") return salience::Causal::kTopLeft;
  if (causal == "bottom_right") return salience::Causal::kBottomRight;
  Raise(PyExc_ValueError,
        "causal: expected 'none', 'top_left' or 'bottom_right', got '" +
            causal + "'");
}

salience::Align ToAlign(const std::string& align) {
  if (align == "top_left") return salience::Align::kTopLeft;
  if (align == "bottom_right") return salience::Align::kBottomRight;
  Raise(PyExc_ValueError,
        "window_align: expected 'top_left' or 'bottom_right', got '" + align +
            "'");
}

}  // namespace

salience::AttentionOptions ToOptions(const OptionArgs& args,
                                     std::int64_t batch) {
  CheckNotEmpty("cu_seqlens_q", args.cu_seqlens_q, 2,
                "num_seqs + 1 >= 2 offsets");
  CheckNotEmpty("cu_seqlens_k", args.cu_seqlens_k, 2,
                "num_seqs + 1 >= 2 offsets");
  if (batch > 0) {
    const std::string lengths = std::to_string(batch) + " lengths (batch)";
    CheckNotEmpty("seqlens_q", args.seqlens_q, 1, lengths.c_str());
    CheckNotEmpty("seqlens_k", args.seqlens_k, 1, lengths.c_str());
  }
  salience::AttentionOptions options;
  options.scale = args.scale;
  options.causal = ToCausal(args.causal);
  options.window_left = args.window_left;
  options.window_right = args.window_right;
  options.window_align = ToAlign(args.window_align);
  options.seqlens_q = ToSpan(args.seqlens_q);
  options.seqlens_k = ToSpan(args.seqlens_k);
  options.cu_seqlens_q = ToSpan(args.cu_seqlens_q);
  options.cu_seqlens_k = ToSpan(args.cu_seqlens_k);
  if (args.mask) options.mask = ToView("mask", *args.mask);
  if (args.alibi_slopes) {
    options.alibi_slopes = {args.alibi_slopes->data(),
                            args.alibi_slopes->size()};
  }
  options.softcap = args.softcap;
  options.dropout_p = args.dropout_p;
  options.dropout_seed = args.dropout_seed;
  options.dropout_offset = args.dropout_offset;
  options.num_threads = args.num_threads;
  return options;
}

namespace {

void Forward(const InArray& q, const InArray& k, const InArray& v,
             const OutArray& out, const std::optional<OutArray>& lse,
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
  const TensorView q_view = ToView("q", q);
  const TensorView k_view = ToView("k", k);
  const TensorView v_view = ToView("v", v);
  const TensorView out_view = ToView("out", out);
  std::optional<TensorView> lse_view;
  if (lse) lse_view = ToView("lse", *lse);
  const salience::AttentionOptions options =
      ToOptions({mask, scale, causal, window_left, window_right, window_align,
                 seqlens_q, seqlens_k, cu_seqlens_q, cu_seqlens_k, alibi_slopes,
                 softcap, dropout_p, dropout_seed, dropout_offset, num_threads},
                q_view.shape[0]);

  // The arrays stay referenced by this frame's arguments, so their memory
  // outlives the call; nothing below touches a Python object.
  const TensorView* lse_ptr = lse_view ? &*lse_view : nullptr;
  salience::Status status;
  {
    nb::gil_scoped_release release;
    status = reference ? salience::AttentionForwardReference(
                             q_view, k_view, v_view, out_view, options, lse_ptr)
                       : salience::AttentionForward(q_view, k_view, v_view,
                                                    out_view, options, lse_ptr);
  }
  RaiseIfError(status);
}

}  // namespace
}  // namespace salience::python

NB_MODULE(_salience, m) {
  using namespace salience::python;
  m.doc() =
      "salience's C++ kernels. Use the functions of the `salience` package; "
      "this module is their engine.";
  m.attr("__version__") = SALIENCE_VERSION_STRING;
  m.attr("MAX_HEAD_DIM") = salience::kMaxHeadDim;
  m.def(
      "max_threads", [] { return omp_get_max_threads(); },
      "The worker threads a call with num_threads=0 uses (OpenMP's default: "
      "OMP_NUM_THREADS, else all cores).");

  m.def("forward", &Forward, nb::arg("q"), nb::arg("k"), nb::arg("v"),
        nb::arg("out"), nb::kw_only(), nb::arg("lse").none() = nb::none(),
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
        R"doc(Attention forward into `out` (and `lse`), in place.

q [batch, seq_q, heads_q, head_dim], k [batch, seq_k, heads_kv, head_dim],
v [batch, seq_k, heads_kv, head_dim_v], out [batch, seq_q, heads_q,
head_dim_v] and lse [batch, heads_q, seq_q] are CPU arrays of any strides
(torch tensors or NumPy arrays, through DLPack, never copied); the mask is
[batch|1, heads_q|1, seq_q|1, seq_k|1], bool or float32. The index arrays
are contiguous int32, alibi_slopes contiguous float32. dropout_p drops
attention weights (kept ones scaled by 1 / (1 - dropout_p)), with the mask
a function of (dropout_seed, dropout_offset). `reference` selects
the fp64 reference kernel. The GIL is released while the kernel runs.
Raises ValueError for a bad argument, TypeError for an unsupported dtype.)doc");
  BindBackward(m);
  BindDecode(m);
  BindSystem(m);
}
