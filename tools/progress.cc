#include "tools/progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace salience::tools {

ProgressBar::ProgressBar(bool enabled, std::string unit)
    : enabled_(enabled && ::isatty(STDERR_FILENO)),
      unit_(std::move(unit)),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void ProgressBar::Update(std::int64_t done, double total) {
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  Draw(done, total);
}

void ProgressBar::Finish(std::int64_t done) {
  if (!enabled_ || !drawn_) return;
  Draw(done, static_cast<double>(done));
  std::fputc('\n', stderr);
}

void ProgressBar::Draw(std::int64_t done, double total) {
  drawn_ = true;
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
          .count();
  const double rate = seconds > 0 ? done / seconds : 0.0;
  char line[160];
  int length = 0;
  if (total > 0) {
    constexpr int kWidth = 24;
    const double fraction = std::clamp(done / total, 0.0, 1.0);
    const int filled = static_cast<int>(kWidth * fraction);
    const double left = rate > 0 ? (total - done) / rate : 0.0;
    const long left_s = std::max(0L, static_cast<long>(left + 0.5));
    length = std::snprintf(
        line, sizeof line,
        "\r[%s%s] %3.0f%%  %lld %s  %.1f %s/s  ETA %ld:%02ld",
        std::string(filled, '#').c_str(),
        std::string(kWidth - filled, ' ').c_str(), 100.0 * fraction,
        static_cast<long long>(done), unit_.c_str(), rate, unit_.c_str(),
        left_s / 60, left_s % 60);
  } else {
    length = std::snprintf(line, sizeof line, "\r%lld %s  %.1f %s/s",
                           static_cast<long long>(done), unit_.c_str(), rate,
                           unit_.c_str());
  }
  // Spaces over what a longer previous line left behind.
  std::fprintf(stderr, "%s%*s", line, std::max(0, 80 - length), "");
  std::fflush(stderr);
}

}  // namespace salience::tools
