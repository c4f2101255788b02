// Dispatch boundary of the fused forward: plans phases, allocates the
// workspace, runs packing and work items on OpenMP threads, and picks the SIMD
// target at run time.
#include "kernels/simd/forward.h"

#include <omp.h>

#include "hwy/base.h"
#if HWY_ARCH_X86
#include <cpuid.h>
#endif

#include <algorithm>
#include <atomic>
#include <limits>
#include <new>

#include "core/half.h"

#include "core/problem.h"
#include "kernels/simd/schedule.h"
#include "kernels/simd/workspace.h"

#undef HWY_TARGET_INCLUDE
#define HWY_TARGET_INCLUDE "kernels/simd/forward.cc"
#include "hwy/foreach_target.h"  // IWYU pragma: keep
#include "hwy/highway.h"
#include "kernels/simd/dot_bf16-inl.h"
#include "kernels/simd/forward-inl.h"

HWY_BEFORE_NAMESPACE();
namespace salience::simd::HWY_NAMESPACE {

// Finds the piece that owns workspace block `block` (pieces are in
// pack_offset order).
inline std::size_t PieceOfBlock(const Phase& phase, std::int64_t block) {
  const auto it = std::upper_bound(
      phase.pieces.begin(), phase.pieces.end(), block,
      [](std::int64_t b, const Piece& piece) { return b < piece.pack_offset; });
  return static_cast<std::size_t>(it - phase.pieces.begin()) - 1;
}

struct ForwardWorkspaceTag {};

template <class Tiles>
Status RunForward(const core::Problem& p) {
  constexpr std::size_t kRows = TileTraits::kQTileRows;
  constexpr std::size_t kBlock = TileTraits::kKvBlock;
  constexpr std::size_t N = TileTraits::kLanes;
  const std::size_t depth = static_cast<std::size_t>(p.head_dim);
  const std::size_t dv_pad = (static_cast<std::size_t>(p.head_dim_v) + N - 1) / N * N;
  const PackedKv::BlockFloats block_floats = Tiles::Block(depth, dv_pad);
  const TileShape tile{static_cast<std::int64_t>(kRows), static_cast<std::int64_t>(kBlock),
                       static_cast<std::int64_t>((block_floats.key + block_floats.value) *
                                                 sizeof(float))};
  try {
    const std::vector<Phase> phases = PlanPhases(p, tile, kPackBudgetBytes);
    std::int64_t max_blocks = 1;
    bool carries = false;
    for (const Phase& phase : phases) {
      max_blocks = std::max(max_blocks, phase.pack_blocks);
      for (const Piece& piece : phase.pieces) carries |= !(piece.first_chunk && piece.last_chunk);
    }
    const int threads = p.num_threads;
    // q_tile, s_tile, o_tile, row_max, row_sum, alpha, hidden (bytes), then
    // the tiles' own (a multiple of 16 floats: every part stays aligned).
    const std::size_t f32_floats = kRows * (depth + 2 * kBlock + dv_pad + N + 2);
    const std::size_t scratch_floats = f32_floats + Tiles::ExtraScratchFloats(depth, dv_pad);
    const std::size_t packed_floats =
        PackedKv::Floats(static_cast<std::size_t>(max_blocks), block_floats);
    float* workspace = CachedWorkspace<ForwardWorkspaceTag>(packed_floats + scratch_floats * threads);
    if (workspace == nullptr) {
      return Status(StatusCode::kResourceExhausted, "forward: workspace allocation failed");
    }
    PackedKv packed(workspace, static_cast<std::size_t>(max_blocks), block_floats);
    float* scratch = workspace + packed_floats;
    CarriedState state;
    if (carries) {
      const std::size_t rows = static_cast<std::size_t>(p.q.shape[0] * p.q.shape[1] * p.heads_q);
      state.row_max.assign(rows, -std::numeric_limits<float>::infinity());
      state.row_sum.assign(rows, 0.0f);
      if (p.out.dtype != DType::kF32) {
        state.partial_out.assign(rows * static_cast<std::size_t>(p.head_dim_v), 0.0f);
      }
    }
    const ItemContext ctx{&p, &packed, &state, dv_pad};

#pragma omp parallel num_threads(threads)
    {
      float* base = scratch + scratch_floats * omp_get_thread_num();
      // The bf16 tiles' part: q_bf16, p_bf16, v_widened (see Bf16DotTiles).
      float* extra = base + f32_floats;
      const std::size_t q_bf16_floats = kRows * ((depth + 1) / 2);
      const bool has_extra = Tiles::ExtraScratchFloats(depth, dv_pad) != 0;
      const Scratch sc{base,
                       base + kRows * depth,
                       base + kRows * (depth + kBlock),
                       base + kRows * (depth + kBlock + dv_pad),
                       base + kRows * (depth + kBlock + dv_pad + 1),
                       base + kRows * (depth + kBlock + dv_pad + 1 + N),
                       reinterpret_cast<std::uint8_t*>(
                           base + kRows * (depth + kBlock + dv_pad + 2 + N)),
                       has_extra ? reinterpret_cast<std::uint16_t*>(extra) : nullptr,
                       has_extra ? reinterpret_cast<std::uint16_t*>(extra + q_bf16_floats)
                                 : nullptr,
                       has_extra ? extra + q_bf16_floats + kRows * kBlock / 2 : nullptr};
      for (const Phase& phase : phases) {
#pragma omp for schedule(dynamic, 4)
        for (std::int64_t block = 0; block < phase.pack_blocks; ++block) {
          const Piece& piece = phase.pieces[PieceOfBlock(phase, block)];
          Tiles::Pack(p, piece, block - piece.pack_offset, dv_pad, block, &packed);
        }
        const std::int64_t items = static_cast<std::int64_t>(phase.items.size());
#pragma omp for schedule(dynamic, 1)
        for (std::int64_t i = 0; i < items; ++i) {
          const WorkItem& item = phase.items[i];
          RunItem<Tiles>(ctx, phase.pieces[item.piece], item, sc);
        }
      }
    }
  } catch (const std::bad_alloc&) {
    return Status(StatusCode::kResourceExhausted, "forward: workspace allocation failed");
  }
  return Status::Ok();
}

// The forward on this target; `dot_bf16` (q, k and v bf16, and the CPU's
// bf16 dot product chosen, see UseDotBf16) selects the bf16 tiles, which
// only the AVX-512 target has.
Status ForwardImpl(const core::Problem& p, bool dot_bf16) {
#if HWY_TARGET == HWY_AVX3
  if (dot_bf16) return RunForward<Bf16DotTiles>(p);
#else
  (void)dot_bf16;
#endif
  return RunForward<F32Tiles>(p);
}

}  // namespace salience::simd::HWY_NAMESPACE
HWY_AFTER_NAMESPACE();

#if HWY_ONCE
namespace salience::simd {

HWY_EXPORT(ForwardImpl);

namespace {

std::atomic<Bf16Path> g_bf16_path_override{Bf16Path::kAuto};

// Whether the CPU has AVX512_BF16 (CPUID leaf 7, subleaf 1, EAX bit 5) and
// the OS saves the AVX-512 registers (XCR0 bits 1, 2, 5, 6, 7).
bool DetectDotBf16() {
#if HWY_ARCH_X86 && (HWY_TARGETS & HWY_AVX3)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid_max(0, nullptr) < 7) return false;
  __cpuid_count(7, 1, eax, ebx, ecx, edx);
  if ((eax & (1u << 5)) == 0) return false;
  __cpuid(1, eax, ebx, ecx, edx);
  if ((ecx & (1u << 27)) == 0) return false;  // OSXSAVE
  unsigned xcr0_low = 0, xcr0_high = 0;
  __asm__("xgetbv" : "=a"(xcr0_low), "=d"(xcr0_high) : "c"(0));
  return (xcr0_low & 0xe6u) == 0xe6u;
#else
  return false;
#endif
}

// The calibration: the bf16 tiles must beat the fp32 tiles by a margin to
// be chosen, since they also round P (and the fp32 path is as fast on
// cores that issue vdpbf16ps at half the FMA rate, such as some Xeons).
constexpr double kDotBf16MinSpeedup = 1.2;

bool CalibratedDotBf16() {
#if HWY_ARCH_X86 && (HWY_TARGETS & HWY_AVX3)
  static const bool faster = CpuHasDotBf16() &&
                             N_AVX3::MeasureDotBf16Speedup() >= kDotBf16MinSpeedup;
  return faster;
#else
  return false;
#endif
}

// Whether this call takes the bf16 dot-product tiles.
bool UseDotBf16(const core::Problem& p) {
  if (p.q.dtype != DType::kBF16 || p.k.dtype != DType::kBF16) return false;
  switch (g_bf16_path_override.load(std::memory_order_relaxed)) {
    case Bf16Path::kDotProduct: return CpuHasDotBf16();
    case Bf16Path::kWiden: return false;
    case Bf16Path::kAuto: break;
  }
  return CalibratedDotBf16();
}

// Rows of out that no query row of any sequence owns (padding past
// seqlens_q, the tail after the last packed sequence): out = 0, lse = -inf.
void ClearUnownedRows(const core::Problem& p) {
  auto* lse = p.lse != nullptr ? static_cast<float*>(p.lse->data) : nullptr;
  auto clear = [&](std::int64_t b, std::int64_t row) {
    for (std::int64_t h = 0; h < p.heads_q; ++h) {
      for (std::int64_t c = 0; c < p.head_dim_v; ++c) {
        core::StoreFloat(p.out, p.out.Offset(b, row, h, c), 0.0f);
      }
      if (lse != nullptr) {
        lse[p.lse->Offset(b, h, row)] = -std::numeric_limits<float>::infinity();
      }
    }
  };
  if (p.varlen) {
    for (std::int64_t row = p.Seq(p.num_seqs - 1).q_begin + p.Seq(p.num_seqs - 1).q_len;
         row < p.q.shape[1]; ++row) {
      clear(0, row);
    }
    return;
  }
  for (std::int64_t s = 0; s < p.num_seqs; ++s) {
    const core::SeqSpan seq = p.Seq(s);
    for (std::int64_t row = seq.q_len; row < seq.q_rows; ++row) clear(s, row);
  }
}

}  // namespace

Status Forward(const core::Problem& p) {
  if (p.num_seqs == 0) return Status::Ok();
  ClearUnownedRows(p);
  return HWY_DYNAMIC_DISPATCH(ForwardImpl)(p, UseDotBf16(p));
}

bool CpuHasDotBf16() {
  static const bool has = DetectDotBf16();
  return has;
}

Bf16Path ChosenBf16Path() {
  return CalibratedDotBf16() ? Bf16Path::kDotProduct : Bf16Path::kWiden;
}

ScopedBf16Path::ScopedBf16Path(Bf16Path path)
    : previous_(g_bf16_path_override.exchange(path)) {}

ScopedBf16Path::~ScopedBf16Path() { g_bf16_path_override.store(previous_); }

std::vector<std::int64_t> RunnableTargets() {
  std::vector<std::int64_t> targets;
  const std::int64_t runnable = hwy::SupportedTargets() & HWY_TARGETS;
  for (std::int64_t bits = runnable; bits != 0; bits &= bits - 1) {
    targets.push_back(bits & -bits);  // lowest bit first = best target first
  }
  return targets;
}

const char* TargetName(std::int64_t target) { return hwy::TargetName(target); }

std::int64_t CurrentTarget() {
  // The best runnable target is the one dynamic dispatch picks.
  const std::int64_t runnable = hwy::SupportedTargets() & HWY_TARGETS;
  return runnable & -runnable;
}

ScopedTarget::ScopedTarget(std::int64_t target) {
  hwy::SetSupportedTargetsForTest(target);
}

ScopedTarget::~ScopedTarget() { hwy::SetSupportedTargetsForTest(0); }

}  // namespace salience::simd
#endif  // HWY_ONCE
