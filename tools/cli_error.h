// How the command line reports failures: one line on stderr,
// "salience: error: <message>", and a non-zero exit code.
#pragma once

#include <iostream>
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

}  // namespace salience::tools
