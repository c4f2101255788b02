#include "tools/line_reader.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "model/tokenizer.h"

namespace salience::tools {
namespace {

constexpr std::size_t kChunkBytes = 1 << 16;

Status Error(const std::string& what) {
  return Status(StatusCode::kInvalidArgument, what);
}

}  // namespace

Status LineReader::Open(const std::string& path, std::size_t max_line_bytes,
                        std::unique_ptr<LineReader>* reader) {
  std::unique_ptr<LineReader> result(new LineReader());
  result->max_line_bytes_ = max_line_bytes;
  if (path == "-") {
    result->label_ = "stdin";
    result->fd_ = STDIN_FILENO;
  } else {
    result->label_ = path;
    result->fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (result->fd_ < 0)
      return Error(path + ": cannot open: " + std::strerror(errno));
    result->owns_fd_ = true;
  }
  struct stat info {};
  if (::fstat(result->fd_, &info) == 0) {
    if (S_ISDIR(info.st_mode))
      return Error(result->label_ +
                   ": is a directory; --input takes a file of one text a "
                   "line");
    if (S_ISREG(info.st_mode))
      result->total_ = static_cast<std::uint64_t>(info.st_size);
  }
  result->buffer_.resize(kChunkBytes);
  *reader = std::move(result);
  return Status::Ok();
}

LineReader::~LineReader() {
  if (owns_fd_) ::close(fd_);
}

// Reads more bytes after the unread ones (moved to the front first).
Status LineReader::Fill(bool* end) {
  if (begin_ > 0) {
    std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
    end_ -= begin_;
    begin_ = 0;
  }
  if (end_ == buffer_.size()) buffer_.resize(buffer_.size() * 2);
  for (;;) {
    const ssize_t got =
        ::read(fd_, buffer_.data() + end_, buffer_.size() - end_);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0)
      return Error(label_ + ": cannot read: " + std::strerror(errno));
    *end = got == 0;
    end_ += static_cast<std::size_t>(got);
    return Status::Ok();
  }
}

Status LineReader::Next(std::string* line, bool* more) {
  line->clear();
  *more = false;
  std::size_t scanned = 0;  // bytes after begin_ known to hold no '\n'
  for (;;) {
    const char* start = buffer_.data() + begin_;
    const char* newline = static_cast<const char*>(
        std::memchr(start + scanned, '\n', end_ - begin_ - scanned));
    std::size_t length = newline != nullptr ? newline - start : end_ - begin_;
    bool at_end = false;
    if (newline == nullptr) {
      scanned = end_ - begin_;
      // Past the limit (a "\r" may still be stripped): no need to read on.
      if (scanned > max_line_bytes_ + 1)
        return Error(label_ + " line " + std::to_string(line_number_ + 1) +
                     ": longer than " + std::to_string(max_line_bytes_) +
                     " bytes (a text a line)");
      Status status = Fill(&at_end);
      if (!status.ok()) return status;
      if (!at_end) continue;
      if (end_ == begin_) return Status::Ok();  // no last line
      length = end_ - begin_;
    }
    const std::size_t taken = length + (newline != nullptr ? 1 : 0);
    if (length > 0 && buffer_[begin_ + length - 1] == '\r') --length;
    ++line_number_;
    if (length > max_line_bytes_)
      return Error(label_ + " line " + std::to_string(line_number_) +
                   ": longer than " + std::to_string(max_line_bytes_) +
                   " bytes (a text a line)");
    line->assign(buffer_.data() + begin_, length);
    begin_ += taken;
    consumed_ += taken;
    // The buffer grew for a long line: give the memory back.
    if (buffer_.size() > kChunkBytes && end_ - begin_ <= kChunkBytes) {
      std::memmove(buffer_.data(), buffer_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
      buffer_.resize(std::max(kChunkBytes, end_));
      buffer_.shrink_to_fit();
    }
    code_points_.clear();
    std::size_t bad_byte = 0;
    if (!model::DecodeUtf8(*line, &code_points_, &bad_byte))
      return Error(label_ + " line " + std::to_string(line_number_) +
                   ": invalid UTF-8 at byte " + std::to_string(bad_byte));
    *more = true;
    return Status::Ok();
  }
}

}  // namespace salience::tools
