// A one-line progress bar on stderr, drawn only when stderr is a terminal:
// items done, items per second, and, when the total is known or can be
// estimated, a bar, the percentage and the time left.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace salience::tools {

class ProgressBar {
 public:
  // `unit` names the items ("sentences"); `enabled` false draws nothing
  // (nor does a stderr that is not a terminal).
  ProgressBar(bool enabled, std::string unit);
  // `done` items so far of about `total` (a fraction of the work when the
  // total is an estimate; <= 0: unknown). Redraws at most 10 times a second.
  void Update(std::int64_t done, double total);
  // The final state and a newline (when anything was drawn).
  void Finish(std::int64_t done);

 private:
  void Draw(std::int64_t done, double total);

  bool enabled_;
  std::string unit_;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool drawn_ = false;
};

}  // namespace salience::tools
