// What the binding files of salience._salience share: the array types they
// take, the views and options built from them, and Status -> exception.
// module.cc defines these and binds the forward; backward_bindings.cc binds
// the backward.
#pragma once

#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>

#include <cstdint>
#include <optional>
#include <string>

#include "salience/salience.h"

namespace nb = nanobind;

namespace salience::python {

// Inputs may be read-only (np.broadcast_to's views are); outputs may not.
using InArray = nb::ndarray<nb::ro, nb::device::cpu>;
using OutArray = nb::ndarray<nb::device::cpu>;
using IndexArray =
    nb::ndarray<const std::int32_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using SlopeArray = nb::ndarray<const float, nb::c_contig, nb::device::cpu>;

// A view of an array of rank 1..4 with its element strides; TypeError for a
// dtype the library has no name for.
TensorView ToView(const char* name, const InArray& array);
TensorView ToView(const char* name, const OutArray& array);

// The keyword options forward() and backward() share, as Python gives them.
struct OptionArgs {
  const std::optional<InArray>& mask;
  std::optional<float> scale;
  const std::string& causal;
  std::int64_t window_left, window_right;
  const std::string& window_align;
  const std::optional<IndexArray>&seqlens_q, &seqlens_k, &cu_seqlens_q,
      &cu_seqlens_k;
  const std::optional<SlopeArray>& alibi_slopes;
  float softcap;
  float dropout_p;
  std::uint64_t dropout_seed, dropout_offset;
  int num_threads;
};

// The library's options; spans and the mask view point into `args`'s arrays.
// ValueError for a causal or window_align name it does not know, and for an
// index array that is given but empty where the library would read an empty
// span as "not given": cu_seqlens (a packed batch needs num_seqs + 1 >= 2
// offsets) and seqlens of a batch of `batch` > 0 entries.
AttentionOptions ToOptions(const OptionArgs& args, std::int64_t batch);

// Nothing for ok; else ValueError (kInvalidArgument, kOutOfRange), TypeError
// (kUnsupported) or MemoryError (kResourceExhausted), "options." removed
// from the message (keyword arguments carry the options' names).
void RaiseIfError(const Status& status);

// Adds backward() to the module (backward_bindings.cc).
void BindBackward(nb::module_& m);

// Adds decode() and merge_states() (decode_bindings.cc).
void BindDecode(nb::module_& m);

// Adds build_info(), machine_info() and measure_peak() (system_bindings.cc).
void BindSystem(nb::module_& m);

}  // namespace salience::python
