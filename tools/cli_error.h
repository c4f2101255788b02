// How the command line reports failures: one line on stderr,
// "salience: error: <message>", and a non-zero exit code.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

namespace salience::tools {

// Exit codes of the `salience` command.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // a check failed, a run went wrong
inline constexpr int kExitUsage = 2;    // bad flags or unsupported request

inline int ReportError(std::string_view message, int exit_code) {
  std::cerr << "salience: error: " << message << '\n';
  return exit_code;
}

// Flushes stdout; false, with the reason in *error, when anything written
// to it so far failed to arrive (a full disk, a closed file): output lost
// is an error, never a silent exit 0.
inline bool FlushStdout(std::string* error) {
  std::cout.flush();
  errno = 0;
  const bool flushed = std::fflush(stdout) == 0;
  const int flush_errno = errno;
  if (flushed && !std::ferror(stdout) && std::cout.good()) return true;
  *error = "cannot write to standard output";
  if (!flushed && flush_errno != 0)
    *error += std::string(": ") + std::strerror(flush_errno);
  return false;
}

}  // namespace salience::tools
