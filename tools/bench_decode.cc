// The decode benchmark. Shapes (llama-style GQA, 32 query heads over 8 kv
// heads, head_dim 128, one new token per sequence):
//   - one sequence of 32768 cached tokens (--seq-k sets another count), fp32
//     and bf16 caches (256 MiB and 128 MiB: several times any L3, so every
//     call reads DRAM);
//   - a batch of 16 ragged sequences (512 .. 8192 tokens) in a paged bf16
//     cache of 64-token pages, shuffled.
// The cache is stored [B,N,H,D] (flash-attn's order; pages [page_size, H,
// D]), or with --layout bhnd [B,H,N,D] (torch's and Hugging Face's order;
// pages [H, page_size, D]), which the kernel reads two heads at a time.
// A call reads each sequence's k_len x heads_kv x (head_dim + head_dim_v)
// cache elements; GB/s = those bytes / the best time of --repeats calls
// (the best, not the median: the machine may be shared, and interference
// only ever slows a run down).
#include "tools/bench_decode.h"

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "hwy/aligned_allocator.h"
#include "kernels/simd/forward.h"
#include "salience/salience.h"
#include "tools/cli_error.h"
#include "tools/peak.h"

namespace salience::tools {
namespace {

struct DecodeShape {
  std::string name;
  std::int64_t heads_q = 32, heads_kv = 8, head_dim = 128;
  std::vector<std::int32_t> lens;
  DType dtype = DType::kF32;
  std::int64_t page_size = 0;  // 0: contiguous
};

// --seq-k replaces the single sequence's 32768 tokens: a cache that fits in
// L2 or L3 times the kernel's arithmetic instead of DRAM.
std::vector<DecodeShape> DecodeShapes(std::int64_t seq_k) {
  const std::int32_t tokens = static_cast<std::int32_t>(seq_k);
  const std::string n = " N" + std::to_string(tokens);
  std::vector<DecodeShape> shapes;
  shapes.push_back(
      {"B1 H32/8 D128" + n + " f32", 32, 8, 128, {tokens}, DType::kF32, 0});
  shapes.push_back(
      {"B1 H32/8 D128" + n + " bf16", 32, 8, 128, {tokens}, DType::kBF16, 0});
  std::mt19937 rng(1);
  std::uniform_int_distribution<std::int32_t> len(512, 8192);
  std::vector<std::int32_t> ragged(16);
  for (std::int32_t& l : ragged) l = len(rng);
  shapes.push_back({"B16 ragged H32/8 D128 paged64 bf16", 32, 8, 128, ragged,
                    DType::kBF16, 64});
  return shapes;
}

// The buffers of one shape, filled once; the cache with small values (bits
// of a 16-bit cache are those of 0.01 * (i % 97)), its rows on cache-line
// boundaries as torch's and serving engines' allocations are (a
// std::vector's start 16 bytes past one: about 4% slower on Zen 5).
struct DecodeBuffers {
  std::vector<float> q, out;
  hwy::AlignedFreeUniquePtr<std::uint16_t[]> cache16;
  hwy::AlignedFreeUniquePtr<float[]> cache32;
  std::vector<std::int32_t> block_table;
  KvCache cache;
  TensorView q_view, out_view;
  double bytes_read = 0.0;

  bool allocated() const { return cache16 != nullptr || cache32 != nullptr; }

  // head_major: the cache stored [B,H,N,D] (torch's order; paged: [pages,
  // H, page_size, D]) instead of [B,N,H,D].
  DecodeBuffers(const DecodeShape& s, bool head_major) {
    const std::int64_t batch = static_cast<std::int64_t>(s.lens.size());
    const std::int64_t longest =
        *std::max_element(s.lens.begin(), s.lens.end());
    const std::int64_t row = s.heads_kv * s.head_dim;
    std::int64_t first = batch, second = longest, max_pages = 0;
    if (s.page_size > 0) {
      max_pages = (longest + s.page_size - 1) / s.page_size;
      first = 0;
      for (std::int32_t l : s.lens)
        first += (l + s.page_size - 1) / s.page_size;
      second = s.page_size;
      std::vector<std::int32_t> ids(first);
      std::iota(ids.begin(), ids.end(), 0);
      std::shuffle(ids.begin(), ids.end(), std::mt19937(2));
      block_table.assign(batch * max_pages, 0);
      std::size_t next = 0;
      for (std::int64_t b = 0; b < batch; ++b) {
        for (std::int64_t p = 0;
             p < (s.lens[b] + s.page_size - 1) / s.page_size; ++p) {
          block_table[b * max_pages + p] = ids[next++];
        }
      }
      cache.block_table = {block_table.data(), batch, max_pages, max_pages};
    }
    const std::size_t elements = static_cast<std::size_t>(first * second * row);
    void *k = nullptr, *v = nullptr;
    if (s.dtype == DType::kF32) {
      cache32 = hwy::AllocateAligned<float>(2 * elements);
      if (!cache32) return;
      for (std::size_t e = 0; e < 2 * elements; ++e)
        cache32[e] = 0.01f * (e % 97);
      k = cache32.get();
      v = cache32.get() + elements;
    } else {
      cache16 = hwy::AllocateAligned<std::uint16_t>(2 * elements);
      if (!cache16) return;
      for (std::size_t e = 0; e < 2 * elements; ++e)
        cache16[e] = 0x3c00 + e % 97;
      k = cache16.get();
      v = cache16.get() + elements;
    }
    const auto view = head_major ? TensorView::Bhnd : TensorView::Bnhd;
    cache.k = view(k, s.dtype, first, second, s.heads_kv, s.head_dim);
    cache.v = view(v, s.dtype, first, second, s.heads_kv, s.head_dim);
    cache.seqlens = s.lens;
    q.assign(batch * s.heads_q * s.head_dim, 0.1f);
    out.assign(q.size(), 0.0f);
    q_view = TensorView::Bnhd(q.data(), DType::kF32, batch, 1, s.heads_q,
                              s.head_dim);
    out_view = TensorView::Bnhd(out.data(), DType::kF32, batch, 1, s.heads_q,
                                s.head_dim);
    for (std::int32_t l : s.lens) {
      bytes_read += static_cast<double>(l) * row * 2 * DTypeSize(s.dtype);
    }
  }
};

struct DecodeTiming {
  double best_seconds = 0.0;
  double gbs = 0.0;
  // Best process CPU time of a call, one thread only: what the call takes
  // when nothing else runs on its core (a run that is descheduled shows a
  // long wall time but not a long CPU time). Negative with more threads:
  // Linux adds the other threads' time to the process clock only at
  // scheduler ticks, so a call of a few ms shows about one thread's share
  // (measured: 1.3 ms of CPU for a 2.7 ms call on two busy threads).
  double best_cpu_seconds = -1.0;
};

double ProcessCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + 1e-9 * static_cast<double>(t.tv_nsec);
}

int TimeDecode(DecodeBuffers& buffers, int threads, const BenchFlags& flags,
               DecodeTiming* timing) {
  AttentionOptions options;
  options.num_threads = threads;
  options.causal = Causal::kBottomRight;
  double best = 1e30, best_cpu = 1e30;
  for (int run = 0; run < flags.warmup + flags.repeats; ++run) {
    const double cpu_start = ProcessCpuSeconds();
    const auto start = std::chrono::steady_clock::now();
    const Status status = AttentionWithKvCache(buffers.q_view, buffers.cache,
                                               buffers.out_view, options);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
            .count();
    const double cpu = ProcessCpuSeconds() - cpu_start;  // kept for 1 thread
    if (!status.ok())
      return ReportError("decode: " + status.ToString(), kExitUsage);
    if (run >= flags.warmup) {
      best = std::min(best, seconds);
      best_cpu = std::min(best_cpu, cpu);
    }
  }
  timing->best_seconds = best;
  if (threads == 1) timing->best_cpu_seconds = best_cpu;
  timing->gbs = buffers.bytes_read / best * 1e-9;
  return kExitOk;
}

}  // namespace

int RunDecodeBench(const BenchFlags& flags) {
  const int all = flags.threads > 0 ? flags.threads : AllThreads();
  // The DRAM figure the multi-thread rows are compared with is measured on
  // as many threads as they run.
  const Peak peak = MeasurePeak(2.0, all);
  std::vector<int> thread_counts = {1};
  if (all > 1) thread_counts.push_back(all);
  if (!flags.json) {
    std::printf(
        "cpu %s, target %s, DRAM read %.1f GB/s (1 thread), %.1f GB/s (%d "
        "threads)\n",
        peak.cpu.c_str(), peak.target.c_str(), peak.dram_gbs_one,
        peak.dram_gbs_all, peak.threads);
    std::printf("%-40s %7s %10s %10s %8s %10s\n", "name", "threads", "best ms",
                "GB/s", "% DRAM", "cpu ms");
  }
  const bool head_major = flags.layout == "bhnd";
  for (const DecodeShape& shape :
       DecodeShapes(flags.seq_k > 0 ? flags.seq_k : 32768)) {
    DecodeBuffers buffers(shape, head_major);
    if (!buffers.allocated()) {
      return ReportError("decode: cannot allocate the cache of " + shape.name,
                         kExitFailure);
    }
    const std::string name = shape.name + (head_major ? " bhnd" : "");
    for (int threads : thread_counts) {
      DecodeTiming timing;
      if (const int code = TimeDecode(buffers, threads, flags, &timing);
          code != kExitOk) {
        return code;
      }
      const double dram = threads == 1 ? peak.dram_gbs_one : peak.dram_gbs_all;
      const double pct = 100.0 * timing.gbs / dram;
      if (flags.json) {
        nlohmann::json row;
        row["name"] = name;
        row["layout"] = flags.layout;
        row["mode"] = "decode";
        row["dtype"] = DTypeName(shape.dtype);
        row["batch"] = shape.lens.size();
        row["heads_q"] = shape.heads_q;
        row["heads_kv"] = shape.heads_kv;
        row["head_dim"] = shape.head_dim;
        row["cache_tokens"] =
            std::accumulate(shape.lens.begin(), shape.lens.end(), 0LL);
        row["page_size"] = shape.page_size;
        row["threads"] = threads;
        row["best_seconds"] = timing.best_seconds;
        if (timing.best_cpu_seconds >= 0.0) {
          row["best_cpu_seconds"] = timing.best_cpu_seconds;
        } else {
          row["best_cpu_seconds"] = nullptr;
        }
        row["cache_bytes"] = buffers.bytes_read;
        row["gbs"] = timing.gbs;
        row["dram_gbs"] = dram;
        row["pct_of_dram"] = pct;
        row["target"] = peak.target;
        row["cpu"] = peak.cpu;
        std::cout << row.dump() << std::endl;
        continue;
      }
      char cpu_ms[32] = "-";
      if (timing.best_cpu_seconds >= 0.0) {
        std::snprintf(cpu_ms, sizeof(cpu_ms), "%.3f",
                      timing.best_cpu_seconds * 1e3);
      }
      std::printf("%-40s %7d %10.3f %10.1f %8.1f %10s\n", name.c_str(), threads,
                  timing.best_seconds * 1e3, timing.gbs, pct, cpu_ms);
      std::fflush(stdout);
    }
  }
  return kExitOk;
}

}  // namespace salience::tools
