#include "viz/layout.h"

#include <algorithm>
#include <cstdio>

#include "model/tokenizer.h"

namespace salience::viz {

std::string ShortLabel(const std::string& token, bool ascii_only) {
  std::vector<char32_t> chars;
  std::size_t error = 0;
  if (!model::DecodeUtf8(token, &chars, &error)) return "?";
  std::string label;
  const bool cut = chars.size() > static_cast<std::size_t>(kMaxLabelChars);
  const std::size_t keep = cut ? kMaxLabelChars - 1 : chars.size();
  for (std::size_t i = 0; i < keep; ++i) {
    if (ascii_only && (chars[i] < 32 || chars[i] > 126))
      label += '?';
    else
      model::AppendUtf8(chars[i], &label);
  }
  if (cut) label += ascii_only ? "~" : "\u2026";
  return label;
}

std::string PanelCaption(int layer, int head) {
  char caption[32];
  std::snprintf(caption, sizeof caption, "L%d H%d", layer, head);
  return caption;
}

std::string AsciiText(const std::string& text) {
  std::vector<char32_t> chars;
  std::size_t error = 0;
  if (!model::DecodeUtf8(text, &chars, &error)) return "?";
  std::string out;
  for (char32_t c : chars)
    out += (c >= 32 && c <= 126) ? static_cast<char>(c) : '?';
  return out;
}

Layout ComputeLayout(const AttentionReport& report) {
  Layout layout;
  const int n = static_cast<int>(std::max<std::int64_t>(report.n(), 1));
  // Panels of about 150 px: a 12-head row fits a wide screen.
  layout.cell = std::clamp(150 / n, 3, 14);
  layout.panel = n * layout.cell;
  int longest = 1;
  for (const std::string& token : report.tokens)
    longest = std::max<int>(longest,
                            static_cast<int>(ShortLabel(token, true).size()));
  layout.label_width = longest * layout.char_width + 6;
  layout.grid_x = layout.gap + layout.label_width;
  layout.grid_y = layout.title + layout.caption;
  const int columns = std::max<int>(static_cast<int>(report.heads.size()), 1);
  const int rows = std::max<int>(static_cast<int>(report.layers.size()), 1);
  int right = layout.PanelX(columns) - layout.gap;
  if (!report.rollout.empty()) {
    layout.rollout_x = right + 2 * layout.gap + layout.label_width;
    layout.rollout_y = layout.grid_y;
    right = layout.rollout_x + layout.panel;
  }
  layout.scale_x = right + 2 * layout.gap;
  layout.scale_y = layout.grid_y;
  layout.width =
      layout.scale_x + layout.scale_width + 5 * layout.char_width + layout.gap;
  const int grid_bottom = layout.PanelY(rows) - layout.gap - layout.caption;
  layout.height = grid_bottom + 4 + layout.label_width + layout.gap;
  return layout;
}

}  // namespace salience::viz
