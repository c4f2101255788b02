// Text lines from a file or stdin, read in bounded memory: a line longer
// than a limit is an error naming its number (a file of one endless line,
// /dev/zero, does not fill memory), and each line is checked to be UTF-8
// as it is read.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "salience/status.h"

namespace salience::tools {

class LineReader {
 public:
  // `path` "-" reads stdin. Refuses a directory and a file that cannot be
  // opened, with the system's reason.
  static Status Open(const std::string& path, std::size_t max_line_bytes,
                     std::unique_ptr<LineReader>* reader);
  ~LineReader();
  LineReader(const LineReader&) = delete;
  LineReader& operator=(const LineReader&) = delete;

  // The next line, without its "\n" or "\r\n", into *line; *more false
  // (and *line empty) at the end. A last line without "\n" counts. Errors
  // name the input and the 1-based line number.
  Status Next(std::string* line, bool* more);

  // Bytes consumed so far, and the input's size when it is a regular file
  // (0 otherwise): what a progress bar needs.
  std::uint64_t bytes_read() const { return consumed_; }
  std::uint64_t total_bytes() const { return total_; }

 private:
  LineReader() = default;
  Status Fill(bool* end);

  std::string label_;
  int fd_ = -1;
  bool owns_fd_ = false;
  std::size_t max_line_bytes_ = 0;
  std::vector<char> buffer_;
  std::size_t begin_ = 0, end_ = 0;  // unread bytes of buffer_
  std::int64_t line_number_ = 0;
  std::uint64_t consumed_ = 0, total_ = 0;
  std::vector<char32_t> code_points_;  // scratch of the UTF-8 check
};

}  // namespace salience::tools
