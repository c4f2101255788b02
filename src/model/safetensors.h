// A strict, memory-mapped reader of the safetensors format.
//
// File layout (https://github.com/huggingface/safetensors, "Format"):
//   [8 bytes]  N, the header length, unsigned little-endian
//   [N bytes]  a JSON object: name -> {"dtype", "shape", "data_offsets"},
//              plus an optional "__metadata__" object of string -> string
//   [rest]     the byte buffer; data_offsets = [begin, end) within it
//
// Every file the format's reference library (huggingface/safetensors,
// Rust, 0.8) loads is accepted, and everything else refused with a Status
// naming the file and the rule broken: the header length is bounded
// (kMaxHeaderBytes) and within the file, the JSON parses to an object, dtypes
// are known, byte sizes are computed with overflow checks (a sub-byte dtype's
// tensor must fill whole bytes) and equal end - begin, offsets lie in the
// buffer, tensors are contiguous and do not overlap. As the reference does,
// the reader accepts a header of any length (the data then need not be
// aligned for its dtype: a reader of floats must copy or read unaligned),
// JSON whitespace around the header object, unknown fields in a tensor's
// entry, an entry written as the array [dtype, shape, data_offsets], a null
// "__metadata__", and a tensor name given twice (the last entry counts); it
// refuses a byte-order mark and a second "__metadata__". The weights are
// never copied: each Tensor points into the mapping, which lives as long as
// the SafetensorsFile.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "salience/status.h"

namespace salience::model {

// The safetensors dtypes ("F32", "BF16", ...), every one the format's
// reference library (huggingface/safetensors 0.8) knows; the reader accepts
// all of them, the encoder uses F32.
enum class StDType : std::uint8_t {
  kBool,
  kF4,      // 4 bits: two elements a byte
  kF6E2M3,  // 6 bits: four elements in three bytes
  kF6E3M2,
  kU8,
  kI8,
  kF8E5M2,
  kF8E4M3,
  kF8E8M0,
  kF8E4M3Fnuz,
  kF8E5M2Fnuz,
  kI16,
  kU16,
  kF16,
  kBF16,
  kI32,
  kU32,
  kF32,
  kC64,
  kF64,
  kI64,
  kU64
};
// Bits of one element (4 for F4, 6 for the F6 types, else 8 x bytes).
std::size_t StDTypeBits(StDType dtype);
const char* StDTypeName(StDType dtype);

struct StTensor {
  std::string name;
  StDType dtype = StDType::kF32;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> bytes;  // into the mapping
  std::int64_t num_elements() const;
};

// The largest header the reader will parse (the format's own reference
// implementation caps it at 100 MB).
inline constexpr std::uint64_t kMaxHeaderBytes = 100'000'000;

class SafetensorsFile {
 public:
  // Maps `path` read-only and validates it.
  static Status Open(const std::string& path,
                     std::unique_ptr<SafetensorsFile>* file);
  // Validates a buffer already in memory (tests, the fuzzer); `bytes` must
  // outlive the result. `label` names it in error messages.
  static Status Parse(std::span<const std::byte> bytes,
                      const std::string& label,
                      std::unique_ptr<SafetensorsFile>* file);

  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return label_; }
  const std::map<std::string, StTensor>& tensors() const { return tensors_; }
  const std::map<std::string, std::string>& metadata() const {
    return metadata_;
  }
  // Null when absent.
  const StTensor* Find(std::string_view name) const;

 private:
  SafetensorsFile() = default;

  std::string label_;
  void* mapping_ = nullptr;
  std::size_t mapping_size_ = 0;
  std::map<std::string, StTensor> tensors_;
  std::map<std::string, std::string> metadata_;
};

}  // namespace salience::model
