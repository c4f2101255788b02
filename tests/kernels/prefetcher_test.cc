// The decode kernel's Prefetcher (decode_tiles-inl.h), compiled for the
// static SIMD target: with a recording request in place of the prefetch
// instruction, every step kind together asks for the next block's lines in
// cache order (the block's K rows, then its V rows; within a row the
// item's heads), each once (rows on line boundaries: every line of the
// block), and for nothing once the block is done.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <random>
#include <vector>

#include "gtest/gtest.h"
#include "kernels/simd/decode_tiles-inl.h"

namespace salience::simd {
namespace {

namespace target = HWY_NAMESPACE;

struct Recorder {
  std::vector<const char*>* lines = nullptr;
  void operator()(const char* line) const { lines->push_back(line); }
};
using RecordingPrefetcher = target::BasicPrefetcher<Recorder>;
using Part = RecordingPrefetcher::Part;

constexpr std::size_t kLine = 64;

// The requests of a span of `bytes` at `start`: its first byte and every
// 64 bytes after it (a partial last line of a span off a line boundary is
// the next span's first, for rows back to back).
void AppendLines(const char* start, std::size_t bytes,
                 std::vector<const char*>* lines) {
  for (std::size_t at = 0; at < bytes; at += kLine)
    lines->push_back(start + at);
}

// What the block should ask for: each part's rows key by key, each row's
// item heads in order.
std::vector<const char*> Expected(const Part (&parts)[2],
                                  std::int64_t first_head, std::size_t keys) {
  std::vector<const char*> lines;
  for (const Part& part : parts) {
    for (std::size_t key = 0; key < keys; ++key) {
      const char* row = part.base + part.rows[key] * static_cast<std::int64_t>(
                                                         part.element_bytes);
      for (std::size_t s = 0; s < part.spans; ++s) {
        AppendLines(
            row + (first_head + static_cast<std::int64_t>(s)) * part.head_bytes,
            part.span, &lines);
      }
    }
  }
  return lines;
}

// Steps `prefetch` with a random mix of every step kind the products use
// until it has asked for `expected` lines, then 20 more steps.
void StepThrough(RecordingPrefetcher& prefetch, std::size_t expected,
                 const std::vector<const char*>& lines, std::mt19937& rng) {
  for (int guard = 0; lines.size() < expected && guard < 100000; ++guard) {
    switch (rng() % 5) {
      case 0:
        prefetch.Step<1>();
        break;
      case 1:
        prefetch.Step<2>();
        break;
      case 2:
        prefetch.Step<4>();
        break;
      case 3:
        prefetch.Step<4, true>();
        break;
      default:
        prefetch.Lines(1 + rng() % 5);
        break;
    }
  }
  for (int i = 0; i < 20; ++i) {
    prefetch.Step<4>();
    prefetch.Step<2, true>();
    prefetch.Lines(3);
  }
}

TEST(PrefetcherTest, HeadSpansKRowsThenVRows) {
  // 6 keys of a paged cache in shuffled slots, 5 kv heads of 40 fp32 each
  // (160 B, not a whole number of lines), an item of heads 1..3.
  constexpr std::size_t kHeads = 5, kDepth = 40, kKeys = 6;
  std::vector<float> k(16 * kHeads * kDepth), v(16 * kHeads * kDepth);
  const std::vector<std::int64_t> rows = {7 * 200, 2 * 200, 11 * 200,
                                          0,       5 * 200, 9 * 200};
  // Start the V rows 4 bytes off a line boundary.
  const char* v_base = reinterpret_cast<const char*>(v.data()) + 4;
  const Part parts[2] = {
      {reinterpret_cast<const char*>(k.data()), rows.data(), 4, 160, 160, 3},
      {v_base, rows.data(), 4, 160, 160, 3}};
  const std::vector<const char*> expected = Expected(parts, 1, kKeys);
  for (unsigned seed = 0; seed < 20; ++seed) {
    std::vector<const char*> lines;
    RecordingPrefetcher prefetch(parts[0], parts[1], 1, kKeys,
                                 Recorder{&lines});
    std::mt19937 rng(seed);
    StepThrough(prefetch, expected.size(), lines, rng);
    ASSERT_EQ(lines, expected) << "seed " << seed;
  }
}

TEST(PrefetcherTest, JoinedRowsAskForEachLineOnce) {
  // 3 keys whose 4 kv heads of 128 bf16 lie back to back: one 1 KiB span
  // per row, one line boundary every 64 B.
  constexpr std::size_t kRow = 4 * 128;
  alignas(64) static std::uint16_t k[8 * kRow], v[8 * kRow];
  const std::vector<std::int64_t> rows = {3 * kRow, 4 * kRow, 1 * kRow};
  const Part parts[2] = {
      {reinterpret_cast<const char*>(k), rows.data(), 2, 256, 1024, 1},
      {reinterpret_cast<const char*>(v), rows.data(), 2, 256, 1024, 1}};
  const std::vector<const char*> expected = Expected(parts, 0, 3);
  std::vector<const char*> sorted = expected;
  std::sort(sorted.begin(), sorted.end());
  EXPECT_EQ(std::adjacent_find(sorted.begin(), sorted.end()), sorted.end());
  std::vector<const char*> lines;
  RecordingPrefetcher prefetch(parts[0], parts[1], 0, 3, Recorder{&lines});
  std::mt19937 rng(7);
  StepThrough(prefetch, expected.size(), lines, rng);
  EXPECT_EQ(lines, expected);
  // Aligned rows of whole lines: 16 lines per row and part.
  EXPECT_EQ(lines.size(), 2u * 3u * 16u);
}

TEST(PrefetcherTest, NoKeysAskForNothing) {
  std::vector<const char*> lines;
  const std::int64_t row = 0;
  float data[16] = {};
  const Part part{reinterpret_cast<const char*>(data), &row, 4, 64, 64, 1};
  RecordingPrefetcher empty(part, part, 0, 0, Recorder{&lines});
  std::mt19937 rng(1);
  StepThrough(empty, 0, lines, rng);
  EXPECT_TRUE(lines.empty());
}

}  // namespace
}  // namespace salience::simd
