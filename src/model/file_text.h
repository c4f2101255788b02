// Reading a model's small text files (config.json, tokenizer.json) whole,
// with a bound on their size: a device or a huge file given as a config
// is refused instead of read until memory runs out.
#pragma once

#include <cstddef>
#include <string>

#include "salience/status.h"

namespace salience::model {

// The bytes of `path` into *text; kInvalidArgument naming the path and the
// reason (the system's, for open and read errors; "is a directory"; "larger
// than max_bytes") otherwise.
Status ReadFileText(const std::string& path, std::size_t max_bytes,
                    std::string* text);

}  // namespace salience::model
