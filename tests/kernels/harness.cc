#include "harness.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <sstream>

#include "core/half.h"
#include "core/validate.h"
#include "kernels/simd/forward.h"

namespace salience::harness {
namespace {

constexpr float kNaN = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();
// Elements before and after every view.
constexpr std::int64_t kGuardElements = 7;
// What output guards hold: a quiet NaN with a payload no kernel produces.
constexpr std::uint32_t kOutputGuardBits = 0x7fe5a5a5u;
// Denominator floor of the relative output error.
constexpr double kTiny = 1e-30;

using Shape = std::array<std::int64_t, TensorView::kMaxRank>;

// A buffer holding `shape` at the given strides from element `start` on,
// with guards on both sides, every element set to `fill`.
template <typename T>
Buffer<T> MakeBuffer(DType dtype, int rank, Shape shape, Shape strides,
                     std::int64_t start, T fill) {
  std::int64_t last = 0;  // offset of the last element of the view
  bool empty = false;
  for (int axis = 0; axis < rank; ++axis) {
    if (shape[axis] == 0) empty = true;
    if (shape[axis] > 0) last += (shape[axis] - 1) * strides[axis];
  }
  const std::int64_t span = empty ? 0 : start + last + 1;
  Buffer<T> buffer;
  buffer.storage.assign(span + 2 * kGuardElements, fill);
  buffer.view.data = buffer.storage.data() + kGuardElements + start;
  buffer.view.dtype = dtype;
  buffer.view.rank = rank;
  buffer.view.shape = shape;
  buffer.view.strides = strides;
  return buffer;
}

Shape RowMajorStrides(Shape extents) {
  Shape strides{};
  std::int64_t stride = 1;
  for (int axis = 3; axis >= 0; --axis) {
    strides[axis] = stride;
    stride *= extents[axis];
  }
  return strides;
}

// q/k/v/out [batch, seq, heads, dim] in the case's layout.
Buffer<float> MakeAttentionTensor(Layout layout, std::int64_t batch,
                                  std::int64_t seq, std::int64_t heads,
                                  std::int64_t dim, float fill) {
  const Shape shape = {batch, seq, heads, dim};
  switch (layout) {
    case Layout::kBnhd:
      return MakeBuffer<float>(DType::kF32, 4, shape, RowMajorStrides(shape), 0,
                               fill);
    case Layout::kBhnd: {
      const Shape memory = RowMajorStrides({batch, heads, seq, dim});
      return MakeBuffer<float>(DType::kF32, 4, shape,
                               {memory[0], memory[2], memory[1], memory[3]}, 0,
                               fill);
    }
    case Layout::kStrided: {
      // Heads 1..heads of a [batch, seq, heads + 2, dim + 3] buffer, as when
      // q is sliced out of a packed qkv tensor with padded rows.
      const Shape strides = RowMajorStrides({batch, seq, heads + 2, dim + 3});
      return MakeBuffer<float>(DType::kF32, 4, shape, strides, strides[2],
                               fill);
    }
    case Layout::kHeadsInner: {
      const Shape memory = RowMajorStrides({batch, seq, dim, heads});
      return MakeBuffer<float>(DType::kF32, 4, shape,
                               {memory[0], memory[1], memory[3], memory[2]}, 0,
                               fill);
    }
  }
  return {};
}

template <typename T, typename Visit>
void ForEachIndex(const Buffer<T>& buffer, Visit visit) {
  const TensorView& view = buffer.view;
  Shape extent = {1, 1, 1, 1};
  for (int axis = 0; axis < view.rank; ++axis) extent[axis] = view.shape[axis];
  for (std::int64_t i0 = 0; i0 < extent[0]; ++i0)
    for (std::int64_t i1 = 0; i1 < extent[1]; ++i1)
      for (std::int64_t i2 = 0; i2 < extent[2]; ++i2)
        for (std::int64_t i3 = 0; i3 < extent[3]; ++i3)
          visit(view.Offset(i0, i1, i2, i3));
}

template <typename T, typename Draw>
void FillView(Buffer<T>& buffer, Draw draw) {
  T* data = static_cast<T*>(buffer.view.data);
  ForEachIndex(buffer, [&](std::int64_t offset) { data[offset] = draw(); });
}

std::int64_t MaxLength(const std::vector<std::int32_t>& cu_seqlens) {
  std::int64_t longest = 0;
  for (std::size_t s = 0; s + 1 < cu_seqlens.size(); ++s) {
    longest =
        std::max<std::int64_t>(longest, cu_seqlens[s + 1] - cu_seqlens[s]);
  }
  return longest;
}

// The mask's [batch, heads, rows, cols] shape and strides for its form.
template <typename T>
Buffer<T> MakeMask(const Case& c, DType dtype) {
  const std::int64_t batch = c.num_seqs(), heads = c.heads_q;
  // Varlen masks are indexed by sequence-local rows and keys.
  const std::int64_t rows = c.varlen() ? MaxLength(c.cu_seqlens_q) : c.seq_q;
  const std::int64_t cols = c.varlen() ? MaxLength(c.cu_seqlens_k) : c.seq_k;
  // The strided layout pads mask rows too.
  const std::int64_t row_pitch = cols + (c.layout == Layout::kStrided ? 3 : 0);
  Shape shape;
  switch (c.mask_form) {
    case MaskForm::kFull:
    case MaskForm::kHeadStrideZero:
    case MaskForm::kTransposed:
      shape = {batch, heads, rows, cols};
      break;
    case MaskForm::kSharedAcrossBatch:
      shape = {1, heads, rows, cols};
      break;
    case MaskForm::kSharedAcrossAll:
      shape = {1, 1, rows, cols};
      break;
    case MaskForm::kKeyPadding:
      shape = {batch, 1, 1, cols};
      break;
    case MaskForm::kQueryRows:
      shape = {batch, 1, rows, 1};
      break;
  }
  Shape strides = RowMajorStrides({shape[0], shape[1], shape[2], row_pitch});
  if (c.mask_form == MaskForm::kQueryRows) {
    strides = RowMajorStrides(shape);
  } else if (c.mask_form == MaskForm::kHeadStrideZero) {
    strides = RowMajorStrides({batch, 1, rows, row_pitch});
    strides[1] = 0;
  } else if (c.mask_form == MaskForm::kTransposed) {
    const Shape memory = RowMajorStrides({batch, heads, cols, rows});
    strides = {memory[0], memory[1], memory[3], memory[2]};
  }
  return MakeBuffer<T>(dtype, 4, shape, strides, 0, T{});
}

std::string Join(const std::vector<std::int32_t>& values) {
  std::string text = "[";
  for (std::size_t i = 0; i < values.size(); ++i) {
    if (i > 0) text += ",";
    text += std::to_string(values[i]);
  }
  return text + "]";
}

const char* LayoutName(Layout layout) {
  switch (layout) {
    case Layout::kBnhd:
      return "bnhd";
    case Layout::kBhnd:
      return "bhnd";
    case Layout::kStrided:
      return "strided";
    case Layout::kHeadsInner:
      return "bndh";
  }
  return "?";
}

const char* MaskFormName(MaskForm form) {
  switch (form) {
    case MaskForm::kFull:
      return "full";
    case MaskForm::kSharedAcrossBatch:
      return "[1,H,Sq,Sk]";
    case MaskForm::kSharedAcrossAll:
      return "[1,1,Sq,Sk]";
    case MaskForm::kKeyPadding:
      return "[B,1,1,Sk]";
    case MaskForm::kHeadStrideZero:
      return "head-stride-0";
    case MaskForm::kQueryRows:
      return "[B,1,Sq,1]";
    case MaskForm::kTransposed:
      return "transposed";
  }
  return "?";
}

bool SameBits(float a, float b) {
  return std::bit_cast<std::uint32_t>(a) == std::bit_cast<std::uint32_t>(b);
}

// Appends a defect, keeping the list short enough to read.
void AddDefect(Comparison* comparison, const std::string& defect) {
  constexpr std::size_t kMaxDefects = 8;
  if (comparison->defects.size() < kMaxDefects) {
    comparison->defects.push_back(defect);
  } else if (comparison->defects.size() == kMaxDefects) {
    comparison->defects.push_back("... more defects");
  }
}

float Widen(std::uint16_t bits, DType dtype) {
  return dtype == DType::kBF16 ? core::F32FromBF16(bits) : core::F32FromF16(bits);
}

std::uint16_t Narrow(float value, DType dtype) {
  return dtype == DType::kBF16 ? core::BF16FromF32(value) : core::F16FromF32(value);
}

// A 16-bit copy of `buffer`, guards and gaps included, rounded to `dtype`.
Buffer<std::uint16_t> Narrowed(const Buffer<float>& buffer, DType dtype) {
  Buffer<std::uint16_t> narrow;
  narrow.storage.resize(buffer.storage.size());
  for (std::size_t i = 0; i < buffer.storage.size(); ++i) {
    narrow.storage[i] = Narrow(buffer.storage[i], dtype);
  }
  narrow.view = buffer.view;
  narrow.view.dtype = dtype;
  narrow.view.data = narrow.storage.data() +
                     (static_cast<const float*>(buffer.view.data) - buffer.storage.data());
  return narrow;
}

// Rounds `buffer` to `dtype` in place and returns its 16-bit copy; an fp32
// dtype leaves it as it is and returns an empty buffer.
Buffer<std::uint16_t> RoundTo(Buffer<float>& buffer, DType dtype) {
  if (dtype == DType::kF32) return {};
  Buffer<std::uint16_t> narrow = Narrowed(buffer, dtype);
  for (std::size_t i = 0; i < buffer.storage.size(); ++i) {
    buffer.storage[i] = Widen(narrow.storage[i], dtype);
  }
  return narrow;
}

void CheckGuards(const Buffer<std::uint16_t>& buffer, const char* name,
                 Comparison* comparison) {
  const std::uint16_t guard =
      Narrow(std::bit_cast<float>(kOutputGuardBits), buffer.view.dtype);
  for (std::int64_t index : buffer.OutsideView()) {
    if (buffer.storage[index] != guard) {
      AddDefect(comparison, std::string(name) + " storage element " +
                                std::to_string(index) + " outside the view was overwritten");
      return;
    }
  }
}

void CheckGuards(const Buffer<float>& buffer, const char* name,
                 Comparison* comparison) {
  const float guard = std::bit_cast<float>(kOutputGuardBits);
  for (std::int64_t index : buffer.OutsideView()) {
    if (!SameBits(buffer.storage[index], guard)) {
      AddDefect(comparison, std::string(name) + " storage element " +
                                std::to_string(index) +
                                " outside the view was overwritten");
      return;
    }
  }
}

// Compares the fast result of (b, i, h) with the reference: live rows
// (reference lse not -inf) by error, NaN pattern included; dead rows
// (padding or fully masked) must be exactly out = 0, lse = -inf.
struct RowComparer {
  CaseData& data;
  const ref::ForwardResult& ref;
  Comparison* result;
  double max_diff = 0.0;  // max |fast - ref| over live outputs
  double max_ref = 0.0;   // max |ref| over live outputs

  void Compare(std::int64_t b, std::int64_t i, std::int64_t h) {
    const Case& c = data.spec();
    const double ref_lse = ref.lse[(b * c.heads_q + h) * c.seq_q + i];
    const bool live = ref_lse != -std::numeric_limits<double>::infinity();
    (live ? result->live_rows : result->dead_rows) += 1;
    const double* ref_out =
        &ref.out[((b * c.seq_q + i) * c.heads_q + h) * c.head_dim_v];
    for (std::int64_t d = 0; d < c.head_dim_v; ++d) {
      const float fast = data.out.At(b, i, h, d);
      result->out_values.push_back(fast);
      CompareValue(fast, ref_out[d], live, b, i, h, "out", d);
    }
    if (live && std::isfinite(ref_lse)) {
      result->score_magnitude =
          std::max(result->score_magnitude, std::abs(ref_lse));
    }
    if (c.with_lse) {
      CompareValue(data.lse.At(b, h, i), ref_lse, live, b, i, h, "lse", -1);
    }
  }

 private:
  void CompareValue(float fast, double expected, bool live, std::int64_t b,
                    std::int64_t i, std::int64_t h, const char* what,
                    std::int64_t d) {
    const bool is_lse = d < 0;
    const double dead_value = is_lse ? -kInf : 0.0;
    bool defect = false;
    if (!live) {
      defect = fast != dead_value;
    } else if (std::isnan(fast) != std::isnan(expected)) {
      defect = true;
      (is_lse ? result->lse_error : max_diff) =
          std::numeric_limits<double>::infinity();
    } else if (!std::isnan(fast) && is_lse) {
      result->lse_error =
          std::max(result->lse_error, std::abs(fast - expected) /
                                          std::max(1.0, std::abs(expected)));
    } else if (!std::isnan(fast)) {
      max_diff = std::max(max_diff, std::abs(fast - expected));
      max_ref = std::max(max_ref, std::abs(expected));
    }
    if (!defect) return;
    std::ostringstream text;
    text << (live ? "row" : "masked/padding row") << " b=" << b << " i=" << i
         << " h=" << h << " " << what;
    if (!is_lse) text << "[" << d << "]";
    text << " = " << fast << ", expected " << (live ? expected : dead_value);
    AddDefect(result, text.str());
  }
};

struct WorstError {
  double out = 0.0, lse = 0.0;
  double out_score_magnitude = 0.0;
  std::string out_case;
  double share = 0.0;  // largest out_error / allowed
  std::string share_case;
};

std::map<std::string, WorstError>& WorstErrors() {
  static std::map<std::string, WorstError> worst;
  return worst;
}

}  // namespace

std::int64_t Case::num_seqs() const {
  return varlen() ? static_cast<std::int64_t>(cu_seqlens_q.size()) - 1 : batch;
}

std::string Describe(const Case& c) {
  std::ostringstream text;
  text << "B=" << c.batch << " Sq=" << c.seq_q << " Sk=" << c.seq_k
       << " Hq=" << c.heads_q << " Hkv=" << c.heads_kv << " D=" << c.head_dim
       << " Dv=" << c.head_dim_v << " layout=" << LayoutName(c.layout);
  if (c.causal != Causal::kNone) {
    text << " causal="
         << (c.causal == Causal::kTopLeft ? "top-left" : "bottom-right");
  }
  if (c.window_left >= 0 || c.window_right >= 0) {
    text << " window=(" << c.window_left << "," << c.window_right << ","
         << (c.window_align == Align::kTopLeft ? "top-left" : "bottom-right")
         << ")";
  }
  if (!c.seqlens_q.empty()) text << " seqlens_q=" << Join(c.seqlens_q);
  if (!c.seqlens_k.empty()) text << " seqlens_k=" << Join(c.seqlens_k);
  if (c.varlen()) {
    text << " cu_q=" << Join(c.cu_seqlens_q)
         << " cu_k=" << Join(c.cu_seqlens_k);
  }
  if (c.mask != MaskKind::kNone) {
    text << " mask=" << (c.mask == MaskKind::kBool ? "bool" : "additive") << "/"
         << MaskFormName(c.mask_form) << "/hidden " << c.mask_hidden_share;
  }
  if (c.alibi != Alibi::kNone) {
    text << " alibi="
         << (c.alibi == Alibi::kPerHead ? "per-head" : "per-batch");
  }
  if (c.softcap > 0.0f) text << " softcap=" << c.softcap;
  if (c.scale) text << " scale=" << *c.scale;
  if (!c.with_lse) text << " lse=off";
  if (c.q_dtype != DType::kF32 || c.kv_dtype != DType::kF32 ||
      c.out_dtype != DType::kF32) {
    text << " dtypes=q:" << DTypeName(c.q_dtype) << ",kv:" << DTypeName(c.kv_dtype)
         << ",out:" << DTypeName(c.out_dtype);
  }
  text << " threads=" << c.num_threads << " values="
       << (c.distribution == Distribution::kNormal ? "normal" : "uniform")
       << "*" << c.value_scale << " seed=" << c.seed;
  return text.str();
}

template <typename T>
std::vector<std::int64_t> Buffer<T>::OutsideView() const {
  std::vector<bool> inside(storage.size(), false);
  const std::int64_t base = static_cast<const T*>(view.data) - storage.data();
  ForEachIndex(*this,
               [&](std::int64_t offset) { inside[base + offset] = true; });
  std::vector<std::int64_t> outside;
  for (std::size_t i = 0; i < storage.size(); ++i) {
    if (!inside[i]) outside.push_back(static_cast<std::int64_t>(i));
  }
  return outside;
}

template struct Buffer<float>;
template struct Buffer<std::uint8_t>;

CaseData::CaseData(const Case& c) : spec_(c) {
  const std::int64_t batch = c.tensor_batch();
  const float guard = std::bit_cast<float>(kOutputGuardBits);
  q = MakeAttentionTensor(c.layout, batch, c.seq_q, c.heads_q, c.head_dim,
                          kNaN);
  k = MakeAttentionTensor(c.layout, batch, c.seq_k, c.heads_kv, c.head_dim,
                          kNaN);
  v = MakeAttentionTensor(c.layout, batch, c.seq_k, c.heads_kv, c.head_dim_v,
                          kNaN);
  out = MakeAttentionTensor(c.layout, batch, c.seq_q, c.heads_q, c.head_dim_v,
                            guard);
  // lse [batch, heads, seq_q]; the strided layout pads heads and rows.
  const std::int64_t lse_pad = c.layout == Layout::kStrided ? 2 : 0;
  const Shape lse_memory =
      RowMajorStrides({1, batch, c.heads_q + lse_pad, c.seq_q + lse_pad});
  lse = MakeBuffer<float>(DType::kF32, 3, {batch, c.heads_q, c.seq_q, 0},
                          {lse_memory[1], lse_memory[2], 1, 0}, lse_pad, guard);

  if (c.out_dtype != DType::kF32) out16 = Narrowed(out, c.out_dtype);

  std::mt19937_64 rng(c.seed);
  FillInputs(rng);
  FillMask(rng);
  SetOptions();
  NarrowInputs();
}

void CaseData::NarrowInputs() {
  q16 = RoundTo(q, spec_.q_dtype);
  k16 = RoundTo(k, spec_.kv_dtype);
  v16 = RoundTo(v, spec_.kv_dtype);
}

void CaseData::FillInputs(std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
  auto draw = [&] {
    const float value = spec_.distribution == Distribution::kNormal
                            ? normal(rng)
                            : uniform(rng);
    return value * spec_.value_scale;
  };
  FillView(q, draw);
  FillView(k, draw);
  FillView(v, draw);
}

// Bool: false with probability mask_hidden_share. Additive: -inf with that
// probability, else a standard normal value.
void CaseData::FillMask(std::mt19937_64& rng) {
  std::normal_distribution<float> normal(0.0f, 1.0f);
  std::uniform_real_distribution<double> unit(0.0, 1.0);
  const double hidden = spec_.mask_hidden_share;
  if (spec_.mask == MaskKind::kBool) {
    bool_mask = MakeMask<std::uint8_t>(spec_, DType::kBool);
    FillView(bool_mask, [&]() -> std::uint8_t { return unit(rng) >= hidden; });
    options.mask = bool_mask.view;
  } else if (spec_.mask == MaskKind::kAdditive) {
    additive_mask = MakeMask<float>(spec_, DType::kF32);
    FillView(additive_mask,
             [&] { return unit(rng) < hidden ? -kInf : normal(rng); });
    options.mask = additive_mask.view;
  }
}

void CaseData::SetOptions() {
  const Case& c = spec_;
  // ALiBi's geometric slopes 2^(-8 (h + 1) / H), varied across sequences.
  if (c.alibi != Alibi::kNone) {
    const std::int64_t seqs = c.alibi == Alibi::kPerBatch ? c.num_seqs() : 1;
    for (std::int64_t s = 0; s < seqs; ++s) {
      for (std::int64_t h = 0; h < c.heads_q; ++h) {
        alibi_slopes.push_back(static_cast<float>(
            std::exp2(-8.0 * static_cast<double>(h + 1) / c.heads_q) *
            (1.0 + 0.5 * static_cast<double>(s))));
      }
    }
  }
  seqlens_q = c.seqlens_q;
  seqlens_k = c.seqlens_k;
  cu_seqlens_q = c.cu_seqlens_q;
  cu_seqlens_k = c.cu_seqlens_k;
  options.scale = c.scale;
  options.causal = c.causal;
  options.window_left = c.window_left;
  options.window_right = c.window_right;
  options.window_align = c.window_align;
  options.seqlens_q = seqlens_q;
  options.seqlens_k = seqlens_k;
  options.cu_seqlens_q = cu_seqlens_q;
  options.cu_seqlens_k = cu_seqlens_k;
  options.alibi_slopes = alibi_slopes;
  options.softcap = c.softcap;
  options.num_threads = c.num_threads;
}

Status RunReference(const CaseData& data, ref::ForwardResult* result) {
  core::Problem problem;
  Status status = core::ValidateForward(data.q.view, data.k.view, data.v.view,
                                        data.out.view, data.options,
                                        data.lse_view(), &problem);
  if (status.ok()) *result = ref::Forward(problem);
  return status;
}

Comparison RunFastAndCompare(CaseData& data, const ref::ForwardResult& ref) {
  const Case& c = data.spec();
  FillView(data.out, [] { return kNaN; });
  FillView(data.lse, [] { return kNaN; });
  const bool narrow_out = !data.out16.storage.empty();
  if (narrow_out) {
    FillView(data.out16, [&] { return Narrow(kNaN, c.out_dtype); });
  }
  Comparison result;
  result.status = AttentionForward(data.q_view(), data.k_view(), data.v_view(),
                                   data.out_view(), data.options, data.lse_view());
  if (!result.status.ok()) return result;
  if (narrow_out) {
    const auto* narrow = static_cast<const std::uint16_t*>(data.out16.view.data);
    auto* wide = static_cast<float*>(data.out.view.data);
    ForEachIndex(data.out16, [&](std::int64_t offset) {
      wide[offset] = Widen(narrow[offset], c.out_dtype);
    });
  }

  RowComparer rows{data, ref, &result};
  for (std::int64_t b = 0; b < c.tensor_batch(); ++b) {
    for (std::int64_t i = 0; i < c.seq_q; ++i) {
      for (std::int64_t h = 0; h < c.heads_q; ++h) rows.Compare(b, i, h);
    }
  }
  result.out_error = rows.max_diff / std::max(rows.max_ref, kTiny);
  if (c.with_lse) {
    ForEachIndex(data.lse, [&](std::int64_t offset) {
      result.lse_values.push_back(
          static_cast<const float*>(data.lse.view.data)[offset]);
    });
  }
  if (narrow_out) {
    CheckGuards(data.out16, "out", &result);
  } else {
    CheckGuards(data.out, "out", &result);
  }
  if (c.with_lse) CheckGuards(data.lse, "lse", &result);
  return result;
}

std::vector<TargetRun> RunOnEveryTarget(CaseData& data) {
  data.NarrowInputs();  // the reference must see what the kernel reads
  ref::ForwardResult ref;
  const Status ref_status = RunReference(data, &ref);
  std::vector<TargetRun> runs;
  for (std::int64_t target : simd::RunnableTargets()) {
    TargetRun run{target, simd::TargetName(target), {}};
    if (ref_status.ok()) {
      simd::ScopedTarget only(target);
      if (simd::CurrentTarget() == target) {
        run.comparison = RunFastAndCompare(data, ref);
      } else {
        run.comparison.status =
            Status(StatusCode::kInvalidArgument,
                   "ScopedTarget did not select the target");
      }
    } else {
      run.comparison.status = ref_status;
    }
    runs.push_back(std::move(run));
  }
  return runs;
}

std::vector<TargetRun> ExpectMatchesReference(CaseData& data,
                                              Tolerance tolerance) {
  std::vector<TargetRun> runs = RunOnEveryTarget(data);
  const std::string description = Describe(data.spec());
  for (const TargetRun& run : runs) {
    const Comparison& result = run.comparison;
    const std::string context = run.target_name + ": " + description;
    EXPECT_TRUE(result.status.ok()) << context << "\n"
                                    << result.status.ToString();
    if (!result.status.ok()) continue;
    const double allowed_out =
        tolerance.out +
        4.0 * std::numeric_limits<float>::epsilon() * result.score_magnitude;
    EXPECT_LE(result.out_error, allowed_out)
        << context << "\nscore magnitude " << result.score_magnitude;
    EXPECT_LE(result.lse_error, tolerance.lse) << context;
    std::string defects;
    for (const std::string& defect : result.defects) defects += "\n  " + defect;
    EXPECT_TRUE(result.defects.empty()) << context << defects;

    WorstError& worst = WorstErrors()[run.target_name];
    if (result.out_error / allowed_out > worst.share) {
      worst.share = result.out_error / allowed_out;
      worst.share_case = description;
    }
    if (result.out_error > worst.out) {
      worst.out = result.out_error;
      worst.out_score_magnitude = result.score_magnitude;
      worst.out_case = description;
    }
    worst.lse = std::max(worst.lse, result.lse_error);
  }
  return runs;
}

std::vector<TargetRun> ExpectMatchesReference(const Case& c,
                                              Tolerance tolerance) {
  CaseData data(c);
  return ExpectMatchesReference(data, tolerance);
}

std::string WorstErrorSummary() {
  std::ostringstream text;
  for (const auto& [target, worst] : WorstErrors()) {
    text << target << ": out " << worst.out << " (score magnitude "
         << worst.out_score_magnitude << "; " << worst.out_case << "), lse "
         << worst.lse << ", largest share of the allowed out error "
         << worst.share << " (" << worst.share_case << ")\n";
  }
  return text.str();
}

}  // namespace salience::harness
