// Where `salience embed` writes its embeddings, row by row as they are
// computed, so that memory does not grow with the input:
//   JSON lines  {"text": ..., "embedding": [...]} a line (stdout, or --out
//               FILE.jsonl)
//   JSON        one array of those objects (--out FILE.json)
//   .npy        NumPy's format, float32 [rows, dim] (--out FILE.npy): the
//               header is written first with room for any row count and
//               completed (seek and rewrite) when the last row is in, so the
//               file must be a regular file.
// Write errors are reported with the system's reason.
#pragma once

#include <cstdint>
#include <cstdio>
#include <memory>
#include <span>
#include <string>
#include <string_view>

#include "salience/status.h"

namespace salience::tools {

class EmbeddingWriter {
 public:
  virtual ~EmbeddingWriter() = default;
  virtual Status Write(std::string_view text,
                       std::span<const float> embedding) = 0;
  // Completes the output (the .npy header, the JSON array's end) and
  // reports any write error.
  virtual Status Finish() = 0;
};

// The writer --out asks for by its extension (.npy, .jsonl, .json), or
// JSON lines on stdout when `path` is empty. A path with another extension
// is a usage error (kInvalidArgument) before anything is created.
Status OpenEmbeddingWriter(const std::string& path, std::int64_t dim,
                           std::unique_ptr<EmbeddingWriter>* writer);

// The format OpenEmbeddingWriter would choose, without opening anything:
// true when `path` has a known extension (or is empty).
bool KnownEmbeddingFormat(const std::string& path);

}  // namespace salience::tools
