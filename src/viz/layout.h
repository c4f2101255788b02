// Where everything goes in the static heatmap figures (PNG and SVG share
// it, so both show the same picture):
//
//   title
//   [y labels] [L0 H0] [L0 H1] ...  [L0 Hk]      [y labels] [rollout] [scale]
//   [y labels] [L1 H0] ...
//              [x labels, vertical, under the last row]       [x labels]
//
// Each panel is n x n cells; row i = the token attending (from), column j =
// the token attended to. Sizes in pixels (SVG user units).
#pragma once

#include <cstdint>
#include <string>

#include "viz/report.h"

namespace salience::viz {

struct Layout {
  int cell = 0;         // one attention weight
  int panel = 0;        // n * cell
  int label_width = 0;  // room for the longest (truncated) token label
  int caption = 14;     // "L2 H7" above each panel
  int gap = 10;
  int title = 24;
  int char_width = 7, char_height = 13;
  int grid_x = 0, grid_y = 0;        // top-left of panel (0, 0)
  int rollout_x = 0, rollout_y = 0;  // top-left of the rollout panel (if any)
  int scale_x = 0, scale_y = 0, scale_width = 14;
  int width = 0, height = 0;

  int PanelX(std::size_t column) const {
    return grid_x + static_cast<int>(column) * (panel + gap);
  }
  int PanelY(std::size_t row) const {
    return grid_y + static_cast<int>(row) * (panel + caption + gap);
  }
};

// Token labels are cut to this many characters (with "…" in SVG/HTML, "~"
// in the PNG's ASCII font).
inline constexpr int kMaxLabelChars = 10;

Layout ComputeLayout(const AttentionReport& report);
// The label drawn for a token: at most kMaxLabelChars code points.
std::string ShortLabel(const std::string& token, bool ascii_only);
// "L2 H7": the caption above the panel of layer 2, head 7.
std::string PanelCaption(int layer, int head);
// Printable ASCII, one '?' for each other code point (the PNG's font).
std::string AsciiText(const std::string& text);
// The colour scale's ticks (weights) and their positions in [0, 1].
inline constexpr float kScaleTicks[] = {1.0f, 0.5f, 0.25f, 0.1f, 0.0f};

}  // namespace salience::viz
