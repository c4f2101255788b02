// A generic harness for the forward kernels, in the spirit of ggml's
// test-backend-ops: describe a problem as a Case, generate its tensors from
// a seed, run the fast path (the public AttentionForward) under every SIMD
// target the CPU can run, and compare each result with the fp64 reference
// (ref::Forward) on the same validated core::Problem.
//
// Every buffer carries guard elements around and (for the strided layout)
// gaps inside the view: inputs hold NaN there, so a kernel that reads outside
// its view poisons its result; outputs hold a sentinel that must survive.
#pragma once

#include <cstdint>
#include <optional>
#include <random>
#include <string>
#include <vector>

#include "kernels/ref/forward_ref.h"
#include "salience/attention.h"

namespace salience::harness {

// How q/k/v/out are laid out in memory (the logical axes are always
// [batch, seq, heads, head_dim]).
enum class Layout : std::uint8_t {
  kBnhd,        // contiguous [B,N,H,D] (flash-attn)
  kBhnd,        // contiguous [B,H,N,D] (torch)
  kStrided,     // a slice of a bigger [B,N,H+2,D+3] buffer: heads 1..H, gaps
  kHeadsInner,  // contiguous [B,N,D,H]: head_dim has stride H, not 1
};

enum class MaskKind : std::uint8_t { kNone, kBool, kAdditive };

// Which axes of the [batch, heads_q, seq_q, seq_k] mask are broadcast.
enum class MaskForm : std::uint8_t {
  kFull,               // [B, H, Sq, Sk]
  kSharedAcrossBatch,  // [1, H, Sq, Sk]
  kSharedAcrossAll,    // [1, 1, Sq, Sk]
  kKeyPadding,         // [B, 1, 1, Sk]
  kHeadStrideZero,     // [B, H, Sq, Sk] with a head stride of 0
  kQueryRows,          // [B, 1, Sq, 1]: hides whole query rows
  kTransposed,         // [B, H, Sq, Sk] stored as [B, H, Sk, Sq]
};

enum class Alibi : std::uint8_t { kNone, kPerHead, kPerBatch };

enum class Distribution : std::uint8_t { kUniform, kNormal };

struct Case {
  std::int64_t batch = 1;  // sequences; with cu_seqlens the tensors have 1
  std::int64_t seq_q = 16, seq_k = 16;  // rows on the tensors' seq axes
  std::int64_t heads_q = 2, heads_kv = 2;
  std::int64_t head_dim = 32, head_dim_v = 32;
  Layout layout = Layout::kBnhd;

  Causal causal = Causal::kNone;
  std::int64_t window_left = -1, window_right = -1;
  Align window_align = Align::kBottomRight;

  std::vector<std::int32_t> seqlens_q, seqlens_k;        // padding; empty: full
  std::vector<std::int32_t> cu_seqlens_q, cu_seqlens_k;  // varlen; empty: none

  MaskKind mask = MaskKind::kNone;
  MaskForm mask_form = MaskForm::kFull;
  double mask_hidden_share = 0.2;  // bool false / additive -inf entries

  Alibi alibi = Alibi::kNone;
  float softcap = 0.0f;
  std::optional<float> scale;
  bool with_lse = true;
  int num_threads = 1;

  // Element types of the tensors the fast kernel reads and writes (k and v
  // share one). The reference reads the same values widened to fp32.
  DType q_dtype = DType::kF32, kv_dtype = DType::kF32, out_dtype = DType::kF32;

  Distribution distribution = Distribution::kNormal;
  float value_scale = 1.0f;  // uniform in [-s, s] or normal with sigma s
  std::uint64_t seed = 1;

  bool varlen() const { return !cu_seqlens_q.empty(); }
  std::int64_t num_seqs() const;
  std::int64_t tensor_batch() const { return varlen() ? 1 : batch; }
};

// One line naming every field that differs from a plain dense problem.
std::string Describe(const Case& c);

// An owned buffer viewed as a tensor, with guard elements around the view.
template <typename T>
struct Buffer {
  std::vector<T> storage;
  TensorView view;

  T& At(std::int64_t i0, std::int64_t i1 = 0, std::int64_t i2 = 0,
        std::int64_t i3 = 0) {
    return static_cast<T*>(view.data)[view.Offset(i0, i1, i2, i3)];
  }
  // Storage indices outside the view (guards and gaps), for guard checks.
  std::vector<std::int64_t> OutsideView() const;
};

// The tensors and options of one Case. Options point into this object, so
// it stays where it was built. Tests may edit the tensors before running.
class CaseData {
 public:
  explicit CaseData(const Case& c);
  CaseData(const CaseData&) = delete;
  CaseData& operator=(const CaseData&) = delete;

  const Case& spec() const { return spec_; }

  Buffer<float> q, k, v, out, lse;
  // 16-bit copies (same layout, guards included) for the dtypes of a case
  // that asks for them, else empty. NarrowInputs rounds q, k and v to their
  // dtypes in place and refreshes the copies: call it after editing them.
  Buffer<std::uint16_t> q16, k16, v16, out16;
  Buffer<float> additive_mask;     // MaskKind::kAdditive
  Buffer<std::uint8_t> bool_mask;  // MaskKind::kBool
  std::vector<std::int32_t> seqlens_q, seqlens_k, cu_seqlens_q, cu_seqlens_k;
  std::vector<float> alibi_slopes;
  AttentionOptions options;

  const TensorView* lse_view() const {
    return spec_.with_lse ? &lse.view : nullptr;
  }
  // The views the fast kernel gets, in the case's dtypes.
  const TensorView& q_view() const { return q16.storage.empty() ? q.view : q16.view; }
  const TensorView& k_view() const { return k16.storage.empty() ? k.view : k16.view; }
  const TensorView& v_view() const { return v16.storage.empty() ? v.view : v16.view; }
  const TensorView& out_view() const { return out16.storage.empty() ? out.view : out16.view; }
  void NarrowInputs();

 private:
  void FillInputs(std::mt19937_64& rng);
  void FillMask(std::mt19937_64& rng);
  void SetOptions();

  Case spec_;
};

// Fast result versus reference for one run.
struct Comparison {
  Status status;  // of AttentionForward; nothing else is set when not ok
  // max |fast - ref| / max(max |ref|, tiny) over the outputs of live rows
  // (rows the reference gives a finite or NaN lse).
  double out_error = 0.0;
  // max |fast - ref| / max(1, |ref|) over live rows: absolute for the usual
  // O(1..10) values, relative once logits are huge.
  double lse_error = 0.0;
  // max |ref lse| over live rows: about the largest score a row weighs,
  // the magnitude fp32 rounds scores at (see Tolerance).
  double score_magnitude = 0.0;
  std::int64_t live_rows = 0, dead_rows = 0;
  // Dead rows not exactly out = 0 / lse = -inf, NaN where the reference has
  // none (or the reverse), guard elements overwritten. Empty when clean.
  std::vector<std::string> defects;
  // The fast results in logical order, [b][i][h][c] and [b][h][i].
  std::vector<float> out_values, lse_values;
};

struct TargetRun {
  std::int64_t target;
  std::string target_name;
  Comparison comparison;
};

// Validates the case's tensors with core::ValidateForward and runs the
// reference on that Problem. The status of a rejected case is returned.
Status RunReference(const CaseData& data, ref::ForwardResult* result);

// Runs AttentionForward under the current target and compares.
Comparison RunFastAndCompare(CaseData& data, const ref::ForwardResult& ref);

// The reference once, then the fast path under each runnable target.
std::vector<TargetRun> RunOnEveryTarget(CaseData& data);

// out_error may reach out + 4 FLT_EPSILON score_magnitude: the kernel rounds
// each score s to fp32 (error eps |s|), and a weight p_j moves by p_j times
// its score's error, so scores riding on a large common offset (ALiBi far
// from the diagonal, big additive masks) cost eps |offset| however the
// kernel is written. The defaults hold with margin: across the battery the
// largest out_error is under a third of what this allows (4.4e-6 at
// head_dim 512 over 9000 keys), on AVX-512, AVX2 and scalar alike.
struct Tolerance {
  double out = 1e-5;
  double lse = 1e-5;
};

// GoogleTest expectations: every target's result is clean and within
// tolerance. Returns the runs for further checks.
std::vector<TargetRun> ExpectMatchesReference(CaseData& data,
                                              Tolerance tolerance = {});
std::vector<TargetRun> ExpectMatchesReference(const Case& c,
                                              Tolerance tolerance = {});

// Worst errors seen per target by ExpectMatchesReference in this process.
std::string WorstErrorSummary();

}  // namespace salience::harness
