#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <utility>

namespace salience::model {
namespace {

struct DTypeInfo {
  const char* name;
  StDType dtype;
  std::size_t bits;
};

constexpr DTypeInfo kDTypes[] = {
    {"BOOL", StDType::kBool, 8},
    {"F4", StDType::kF4, 4},
    {"F6_E2M3", StDType::kF6E2M3, 6},
    {"F6_E3M2", StDType::kF6E3M2, 6},
    {"U8", StDType::kU8, 8},
    {"I8", StDType::kI8, 8},
    {"F8_E5M2", StDType::kF8E5M2, 8},
    {"F8_E4M3", StDType::kF8E4M3, 8},
    {"F8_E8M0", StDType::kF8E8M0, 8},
    {"F8_E4M3FNUZ", StDType::kF8E4M3Fnuz, 8},
    {"F8_E5M2FNUZ", StDType::kF8E5M2Fnuz, 8},
    {"I16", StDType::kI16, 16},
    {"U16", StDType::kU16, 16},
    {"F16", StDType::kF16, 16},
    {"BF16", StDType::kBF16, 16},
    {"I32", StDType::kI32, 32},
    {"U32", StDType::kU32, 32},
    {"F32", StDType::kF32, 32},
    {"C64", StDType::kC64, 64},
    {"F64", StDType::kF64, 64},
    {"I64", StDType::kI64, 64},
    {"U64", StDType::kU64, 64},
};

Status Error(const std::string& label, const std::string& what) {
  return Status(StatusCode::kInvalidArgument, label + ": " + what);
}

// a * b into *out, false on overflow past uint64 (the reference's usize).
bool CheckedMul(std::uint64_t a, std::uint64_t b, std::uint64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}

struct Span {
  std::uint64_t begin, end;
  const std::string* name;
};

// One header entry into `tensor`; `buffer_size` bounds the offsets. The
// entry is an object {"dtype", "shape", "data_offsets"} (other fields are
// ignored, as the reference's serde does), or the same three in an array.
Status ParseEntry(const std::string& label, const std::string& name,
                  const nlohmann::json& entry, std::uint64_t buffer_size,
                  StTensor* tensor, Span* span) {
  const std::string where = "tensor '" + name + "'";
  const nlohmann::json* dtype = nullptr;
  const nlohmann::json* shape = nullptr;
  const nlohmann::json* offsets = nullptr;
  if (entry.is_array() && entry.size() == 3) {
    dtype = &entry[0];
    shape = &entry[1];
    offsets = &entry[2];
  } else if (entry.is_object()) {
    const auto find = [&](const char* key) -> const nlohmann::json* {
      const auto it = entry.find(key);
      return it == entry.end() ? nullptr : &*it;
    };
    dtype = find("dtype");
    shape = find("shape");
    offsets = find("data_offsets");
  } else {
    return Error(label, where +
                            ": entry is neither an object nor an array "
                            "[dtype, shape, data_offsets]");
  }
  if (dtype == nullptr || !dtype->is_string())
    return Error(label, where + ": missing or non-string \"dtype\"");
  const DTypeInfo* info = nullptr;
  for (const DTypeInfo& candidate : kDTypes)
    if (dtype->get_ref<const std::string&>() == candidate.name)
      info = &candidate;
  if (info == nullptr)
    return Error(label, where + ": unknown dtype '" +
                            dtype->get_ref<const std::string&>() + "'");
  tensor->dtype = info->dtype;

  if (shape == nullptr || !shape->is_array())
    return Error(label, where + ": missing or non-array \"shape\"");
  std::uint64_t elements = 1;
  for (const nlohmann::json& dim : *shape) {
    if (!dim.is_number_unsigned())
      return Error(label,
                   where + ": shape entries must be non-negative integers");
    const std::uint64_t extent = dim.get<std::uint64_t>();
    if (!CheckedMul(elements, extent, &elements))
      return Error(label, where + ": shape's element count overflows");
    // Shapes are int64 here; a larger extent (the reference takes one in a
    // shape with a zero) describes no real tensor.
    if (extent >
        static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
      return Error(label, where + ": shape entry " + std::to_string(extent) +
                              " exceeds 2^63 - 1");
    tensor->shape.push_back(static_cast<std::int64_t>(extent));
  }
  std::uint64_t bits = 0;
  if (!CheckedMul(elements, info->bits, &bits))
    return Error(label, where + ": shape's byte size overflows");
  if (bits % 8 != 0)
    return Error(label, where + ": " + std::to_string(elements) + " " +
                            info->name + " elements do not fill whole bytes");
  const std::uint64_t bytes = bits / 8;

  if (offsets == nullptr || !offsets->is_array() || offsets->size() != 2 ||
      !(*offsets)[0].is_number_unsigned() ||
      !(*offsets)[1].is_number_unsigned())
    return Error(
        label,
        where +
            ": \"data_offsets\" must be [begin, end] of non-negative integers");
  span->begin = (*offsets)[0].get<std::uint64_t>();
  span->end = (*offsets)[1].get<std::uint64_t>();
  if (span->end < span->begin)
    return Error(label, where + ": data_offsets end " +
                            std::to_string(span->end) + " < begin " +
                            std::to_string(span->begin));
  if (span->end > buffer_size)
    return Error(label, where + ": data_offsets end " +
                            std::to_string(span->end) +
                            " lies past the data buffer (" +
                            std::to_string(buffer_size) + " bytes)");
  if (span->end - span->begin != bytes)
    return Error(label, where + ": data_offsets span " +
                            std::to_string(span->end - span->begin) +
                            " bytes, but dtype and shape need " +
                            std::to_string(bytes));
  tensor->name = name;
  return Status::Ok();
}

Status ParseMetadata(const std::string& label, const nlohmann::json& value,
                     std::map<std::string, std::string>* metadata) {
  if (value.is_null()) return Status::Ok();  // serde's Option: none
  if (!value.is_object())
    return Error(label, "\"__metadata__\" is not an object");
  for (const auto& [key, text] : value.items()) {
    if (!text.is_string())
      return Error(label,
                   "\"__metadata__\" value of '" + key + "' is not a string");
    (*metadata)[key] = text.get<std::string>();
  }
  return Status::Ok();
}

// The tensors, sorted by offset, must tile the buffer exactly: the first
// starts at 0, each starts where the previous ended, the last ends at the
// buffer's end (the format's "no holes" rule, as its reference enforces).
Status CheckTiling(const std::string& label, std::vector<Span> spans,
                   std::uint64_t buffer_size) {
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) {
    return a.begin != b.begin ? a.begin < b.begin : a.end < b.end;
  });
  std::uint64_t expected = 0;
  for (const Span& span : spans) {
    if (span.begin < expected)
      return Error(label, "tensor '" + *span.name +
                              "' overlaps the previous tensor (begins at " +
                              std::to_string(span.begin) +
                              ", previous ends at " + std::to_string(expected) +
                              ")");
    if (span.begin > expected)
      return Error(label, "gap in the data buffer before tensor '" +
                              *span.name + "' (begins at " +
                              std::to_string(span.begin) + ", expected " +
                              std::to_string(expected) + ")");
    expected = span.end;
  }
  if (expected != buffer_size)
    return Error(label, "data buffer has " + std::to_string(buffer_size) +
                            " bytes but the tensors cover " +
                            std::to_string(expected));
  return Status::Ok();
}

}  // namespace

std::size_t StDTypeBits(StDType dtype) {
  for (const DTypeInfo& info : kDTypes)
    if (info.dtype == dtype) return info.bits;
  return 0;
}

const char* StDTypeName(StDType dtype) {
  for (const DTypeInfo& info : kDTypes)
    if (info.dtype == dtype) return info.name;
  return "?";
}

std::int64_t StTensor::num_elements() const {
  std::int64_t count = 1;
  for (std::int64_t extent : shape) count *= extent;
  return count;
}

Status SafetensorsFile::Parse(std::span<const std::byte> bytes,
                              const std::string& label,
                              std::unique_ptr<SafetensorsFile>* file) {
  if (bytes.size() < 8)
    return Error(label, "truncated: " + std::to_string(bytes.size()) +
                            " bytes, fewer than the 8-byte header length");
  std::uint64_t header_size = 0;
  for (int i = 7; i >= 0; --i)
    header_size = (header_size << 8) | std::to_integer<std::uint8_t>(bytes[i]);
  if (header_size > kMaxHeaderBytes)
    return Error(label, "header length " + std::to_string(header_size) +
                            " exceeds the limit of " +
                            std::to_string(kMaxHeaderBytes));
  if (header_size > bytes.size() - 8)
    return Error(label, "truncated: header length " +
                            std::to_string(header_size) + " but only " +
                            std::to_string(bytes.size() - 8) + " bytes follow");
  const char* header_begin = reinterpret_cast<const char*>(bytes.data() + 8);
  const std::uint64_t buffer_size = bytes.size() - 8 - header_size;

  std::unique_ptr<SafetensorsFile> result(new SafetensorsFile());
  result->label_ = label;
  std::vector<Span> spans;
  // The reference reads the header with serde: a tensor name given twice
  // keeps its last entry (as nlohmann's object does), but a second
  // "__metadata__", or a second "dtype", "shape" or "data_offsets" in one
  // entry, is an error. The parser's callback sees every key as it is read,
  // before the object keeps only the last of duplicates.
  std::string duplicate;
  bool seen_metadata = false;
  std::string top_key;
  std::vector<std::string> entry_keys;
  const auto callback = [&](int depth, nlohmann::json::parse_event_t event,
                            nlohmann::json& parsed) {
    using Event = nlohmann::json::parse_event_t;
    if (event == Event::object_start && depth == 1) entry_keys.clear();
    if (event != Event::key || !duplicate.empty()) return true;
    const std::string& key = parsed.get_ref<const std::string&>();
    if (depth == 1) {
      top_key = key;
      if (key == "__metadata__" && seen_metadata)
        duplicate = "a second \"__metadata__\"";
      seen_metadata = seen_metadata || key == "__metadata__";
    } else if (depth == 2 && top_key != "__metadata__" &&
               (key == "dtype" || key == "shape" || key == "data_offsets")) {
      if (std::find(entry_keys.begin(), entry_keys.end(), key) !=
          entry_keys.end())
        duplicate = "tensor '" + top_key + "' has \"" + key + "\" twice";
      entry_keys.push_back(key);
    }
    return true;
  };
  // serde reads JSON, which has no byte-order mark; nlohmann skips one.
  if (header_size >= 3 && std::memcmp(header_begin, "\xEF\xBB\xBF", 3) == 0)
    return Error(label, "header starts with a byte-order mark");
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_size,
                                   callback);
  } catch (const nlohmann::json::exception& e) {
    return Error(label, std::string("header is not valid JSON: ") + e.what());
  }
  if (!header.is_object()) return Error(label, "header is not a JSON object");
  if (!duplicate.empty()) return Error(label, "header has " + duplicate);

  for (const auto& [name, entry] : header.items()) {
    if (name == "__metadata__") {
      Status status = ParseMetadata(label, entry, &result->metadata_);
      if (!status.ok()) return status;
      continue;
    }
    StTensor tensor;
    Span span{};
    Status status = ParseEntry(label, name, entry, buffer_size, &tensor, &span);
    if (!status.ok()) return status;
    const std::byte* data = bytes.data() + 8 + header_size + span.begin;
    tensor.bytes = std::span<const std::byte>(data, span.end - span.begin);
    auto inserted = result->tensors_.emplace(name, std::move(tensor));
    span.name = &inserted.first->first;
    spans.push_back(span);
  }
  Status status = CheckTiling(label, spans, buffer_size);
  if (!status.ok()) return status;
  *file = std::move(result);
  return Status::Ok();
}

Status SafetensorsFile::Open(const std::string& path,
                             std::unique_ptr<SafetensorsFile>* file) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return Error(path, std::string("cannot open: ") + std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return Error(path, "not a regular file");
  }
  const std::size_t size = static_cast<std::size_t>(info.st_size);
  void* mapping = nullptr;
  if (size > 0) {
    mapping = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (mapping == MAP_FAILED) {
      const int error = errno;
      ::close(fd);
      return Error(path, std::string("mmap failed: ") + std::strerror(error));
    }
  }
  ::close(fd);
  std::span<const std::byte> bytes(static_cast<const std::byte*>(mapping),
                                   size);
  Status status = Parse(bytes, path, file);
  if (!status.ok()) {
    if (mapping != nullptr) ::munmap(mapping, size);
    return status;
  }
  (*file)->mapping_ = mapping;
  (*file)->mapping_size_ = size;
  return Status::Ok();
}

SafetensorsFile::~SafetensorsFile() {
  if (mapping_ != nullptr) ::munmap(mapping_, mapping_size_);
}

const StTensor* SafetensorsFile::Find(std::string_view name) const {
  const auto it = tensors_.find(std::string(name));
  return it == tensors_.end() ? nullptr : &it->second;
}

}  // namespace salience::model
