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
  std::size_t size;
};

constexpr DTypeInfo kDTypes[] = {
    {"BOOL", StDType::kBool, 1},      {"U8", StDType::kU8, 1},
    {"I8", StDType::kI8, 1},          {"U16", StDType::kU16, 2},
    {"I16", StDType::kI16, 2},        {"F16", StDType::kF16, 2},
    {"BF16", StDType::kBF16, 2},      {"U32", StDType::kU32, 4},
    {"I32", StDType::kI32, 4},        {"F32", StDType::kF32, 4},
    {"U64", StDType::kU64, 8},        {"I64", StDType::kI64, 8},
    {"F64", StDType::kF64, 8},        {"F8_E4M3", StDType::kF8E4M3, 1},
    {"F8_E5M2", StDType::kF8E5M2, 1},
};

Status Error(const std::string& label, const std::string& what) {
  return Status(StatusCode::kInvalidArgument, label + ": " + what);
}

// a * b into *out, false on overflow past int64.
bool CheckedMul(std::uint64_t a, std::uint64_t b, std::uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<std::int64_t>::max() / a) return false;
  *out = a * b;
  return true;
}

struct Span {
  std::uint64_t begin, end;
  const std::string* name;
};

// One header entry into `tensor`; `buffer_size` bounds the offsets.
Status ParseEntry(const std::string& label, const std::string& name,
                  const nlohmann::json& entry, std::uint64_t buffer_size,
                  StTensor* tensor, Span* span) {
  const std::string where = "tensor '" + name + "'";
  if (!entry.is_object())
    return Error(label, where + ": entry is not an object");
  for (const auto& [key, value] : entry.items()) {
    (void)value;
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      return Error(label, where + ": unknown field '" + key + "'");
  }
  const auto dtype = entry.find("dtype");
  if (dtype == entry.end() || !dtype->is_string())
    return Error(label, where + ": missing or non-string \"dtype\"");
  const DTypeInfo* info = nullptr;
  for (const DTypeInfo& candidate : kDTypes)
    if (dtype->get_ref<const std::string&>() == candidate.name)
      info = &candidate;
  if (info == nullptr)
    return Error(label, where + ": unknown dtype '" +
                            dtype->get_ref<const std::string&>() + "'");
  tensor->dtype = info->dtype;

  const auto shape = entry.find("shape");
  if (shape == entry.end() || !shape->is_array())
    return Error(label, where + ": missing or non-array \"shape\"");
  std::uint64_t bytes = info->size;
  for (const nlohmann::json& dim : *shape) {
    if (!dim.is_number_unsigned())
      return Error(label,
                   where + ": shape entries must be non-negative integers");
    const std::uint64_t extent = dim.get<std::uint64_t>();
    if (!CheckedMul(bytes, extent, &bytes))
      return Error(label, where + ": shape's byte size overflows");
    tensor->shape.push_back(static_cast<std::int64_t>(extent));
  }

  const auto offsets = entry.find("data_offsets");
  if (offsets == entry.end() || !offsets->is_array() || offsets->size() != 2 ||
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

std::size_t StDTypeSize(StDType dtype) {
  for (const DTypeInfo& info : kDTypes)
    if (info.dtype == dtype) return info.size;
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
  bool duplicate = false;
  std::string duplicate_name;
  // The parser's callback sees every key as it is read, before the object
  // keeps only the last of duplicates: refuse them there.
  int depth = 0;
  std::vector<std::string> top_keys;
  const auto callback = [&](int parse_depth,
                            nlohmann::json::parse_event_t event,
                            nlohmann::json& parsed) {
    depth = parse_depth;
    if (event == nlohmann::json::parse_event_t::key && parse_depth == 1) {
      const std::string& key = parsed.get_ref<const std::string&>();
      if (std::find(top_keys.begin(), top_keys.end(), key) != top_keys.end()) {
        duplicate = true;
        duplicate_name = key;
      }
      top_keys.push_back(key);
    }
    return true;
  };
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(header_begin, header_begin + header_size,
                                   callback);
  } catch (const nlohmann::json::exception& e) {
    return Error(label, std::string("header is not valid JSON: ") + e.what());
  }
  (void)depth;
  if (!header.is_object()) return Error(label, "header is not a JSON object");
  if (duplicate)
    return Error(label, "duplicate tensor name '" + duplicate_name + "'");

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
