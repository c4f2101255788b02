// `salience check`: the reference comparison battery (check_cases.h) on
// this machine, every case on every SIMD target the CPU can run.
#pragma once

namespace salience::tools {

struct CheckFlags {
  bool quick = false;  // the short subset
  bool json = false;   // one JSON object per line
};

// Returns the process exit code: 0 when every case is within tolerance,
// 1 when any is not.
int RunCheck(const CheckFlags& flags);

}  // namespace salience::tools
