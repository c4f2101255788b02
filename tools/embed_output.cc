#include "tools/embed_output.h"

#include <sys/stat.h>

#include <bit>
#include <cerrno>
#include <cstring>
#include <nlohmann/json.hpp>
#include <vector>

namespace salience::tools {
namespace {

bool EndsWith(const std::string& text, std::string_view suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

Status WriteError(const std::string& path, int error) {
  return Status(StatusCode::kInvalidArgument,
                path + ": cannot write: " + std::strerror(error));
}

// A FILE opened for writing, closed (with its error checked) by Close.
class OutFile {
 public:
  ~OutFile() {
    if (file_ != nullptr && file_ != stdout) std::fclose(file_);
  }
  Status Open(const std::string& path) {
    path_ = path.empty() ? "standard output" : path;
    file_ = path.empty() ? stdout : std::fopen(path.c_str(), "wb");
    return file_ != nullptr ? Status::Ok() : WriteError(path_, errno);
  }
  Status Put(std::string_view bytes) {
    if (std::fwrite(bytes.data(), 1, bytes.size(), file_) != bytes.size())
      return WriteError(path_, errno);
    return Status::Ok();
  }
  // Flushes; a write that failed earlier is reported here too.
  Status Flush() {
    errno = 0;
    if (std::fflush(file_) != 0 || std::ferror(file_))
      return WriteError(path_, errno != 0 ? errno : EIO);
    return Status::Ok();
  }
  Status Close() {
    Status status = Flush();
    if (file_ != stdout) {
      if (std::fclose(file_) != 0 && status.ok())
        status = WriteError(path_, errno);
      file_ = nullptr;
    }
    return status;
  }
  FILE* get() const { return file_; }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  FILE* file_ = nullptr;
};

// JSON lines, or with `array` one JSON array of the same objects.
class JsonWriter : public EmbeddingWriter {
 public:
  explicit JsonWriter(bool array) : array_(array) {}
  Status Open(const std::string& path) { return out_.Open(path); }
  Status Write(std::string_view text,
               std::span<const float> embedding) override {
    nlohmann::ordered_json row;
    row["text"] = text;
    row["embedding"] = std::vector<float>(embedding.begin(), embedding.end());
    std::string line = array_ ? (rows_ == 0 ? "[\n" : ",\n") : "";
    line += row.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
    if (!array_) line += '\n';
    ++rows_;
    return out_.Put(line);
  }
  Status Finish() override {
    Status status =
        array_ ? out_.Put(rows_ == 0 ? "[]\n" : "\n]\n") : Status::Ok();
    return status.ok() ? out_.Close() : status;
  }

 private:
  OutFile out_;
  bool array_;
  std::int64_t rows_ = 0;
};

// NumPy .npy v1.0: the magic, a little-endian header length, a Python
// dict literal padded with spaces to a fixed kHeaderBytes (a multiple of
// 64, as the format asks, with room for a 20-digit row count), then the
// rows. The row count is patched into the header at the end.
class NpyWriter : public EmbeddingWriter {
 public:
  static constexpr std::size_t kHeaderBytes = 128;
  explicit NpyWriter(std::int64_t dim) : dim_(dim) {}
  Status Open(const std::string& path) {
    Status status = out_.Open(path);
    if (!status.ok()) return status;
    struct stat info {};
    if (::fstat(::fileno(out_.get()), &info) != 0 || !S_ISREG(info.st_mode))
      return Status(StatusCode::kInvalidArgument,
                    path +
                        ": a .npy output must be a regular file (its header "
                        "is completed at the end)");
    return out_.Put(Header());
  }
  Status Write(std::string_view, std::span<const float> embedding) override {
    static_assert(std::endian::native == std::endian::little,
                  "the .npy header says '<f4'");
    ++rows_;
    return out_.Put({reinterpret_cast<const char*>(embedding.data()),
                     embedding.size_bytes()});
  }
  Status Finish() override {
    Status status = out_.Flush();
    if (status.ok() && std::fseek(out_.get(), 0, SEEK_SET) != 0)
      status = WriteError(out_.path(), errno);
    if (status.ok()) status = out_.Put(Header());
    return status.ok() ? out_.Close() : status;
  }

 private:
  std::string Header() const {
    std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows_) + ", " + std::to_string(dim_) +
                       "), }";
    std::string header("\x93NUMPY\x01\x00", 8);
    const std::size_t length = kHeaderBytes - 10;
    header += static_cast<char>(length & 0xFF);
    header += static_cast<char>(length >> 8);
    dict.resize(length - 1, ' ');
    return header + dict + '\n';
  }

  OutFile out_;
  std::int64_t dim_;
  std::int64_t rows_ = 0;
};

}  // namespace

bool KnownEmbeddingFormat(const std::string& path) {
  return path.empty() || EndsWith(path, ".npy") || EndsWith(path, ".jsonl") ||
         EndsWith(path, ".json");
}

Status OpenEmbeddingWriter(const std::string& path, std::int64_t dim,
                           std::unique_ptr<EmbeddingWriter>* writer) {
  if (!KnownEmbeddingFormat(path))
    return Status(StatusCode::kInvalidArgument,
                  "--out " + path +
                      ": expected a .npy, .jsonl or .json file (the extension "
                      "chooses the format)");
  if (EndsWith(path, ".npy")) {
    auto npy = std::make_unique<NpyWriter>(dim);
    Status status = npy->Open(path);
    if (!status.ok()) return status;
    *writer = std::move(npy);
    return Status::Ok();
  }
  auto json = std::make_unique<JsonWriter>(EndsWith(path, ".json"));
  Status status = json->Open(path);
  if (!status.ok()) return status;
  *writer = std::move(json);
  return Status::Ok();
}

}  // namespace salience::tools
