#include "model/file_text.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace salience::model {

Status ReadFileText(const std::string& path, std::size_t max_bytes,
                    std::string* text) {
  const auto error = [&](const std::string& what) {
    return Status(StatusCode::kInvalidArgument, path + ": " + what);
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return error(std::string("cannot open: ") + std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) == 0 && S_ISDIR(info.st_mode)) {
    ::close(fd);
    return error("is a directory");
  }
  text->clear();
  char chunk[1 << 16];
  for (;;) {
    const ssize_t got = ::read(fd, chunk, sizeof chunk);
    if (got < 0 && errno == EINTR) continue;
    if (got < 0) {
      const int read_errno = errno;
      ::close(fd);
      return error(std::string("cannot read: ") + std::strerror(read_errno));
    }
    if (got == 0) break;
    if (text->size() + static_cast<std::size_t>(got) > max_bytes) {
      ::close(fd);
      text->clear();
      return error("larger than " + std::to_string(max_bytes) +
                   " bytes; not a model file");
    }
    text->append(chunk, static_cast<std::size_t>(got));
  }
  ::close(fd);
  return Status::Ok();
}

}  // namespace salience::model
