#include "viz/heatmap_svg.h"

#include <cmath>
#include <cstdio>
#include <sstream>

#include "viz/colormap.h"
#include "viz/layout.h"

namespace salience::viz {
namespace {

std::string Weight(float value) {
  char text[32];
  std::snprintf(text, sizeof text, "%.4f", value);
  return text;
}

// One panel: cells, then token labels left (rows) and below (columns) when
// asked.
void Panel(std::ostringstream& svg, const AttentionReport& report,
           const Layout& layout, const std::vector<float>& map, int x, int y,
           const std::string& caption, bool y_labels, bool x_labels) {
  const std::int64_t n = report.n();
  svg << "<g><text x=\"" << x << "\" y=\"" << y - 3 << "\" class=\"cap\">"
      << XmlEscape(caption) << "</text>\n";
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j) {
      const float weight = map[i * n + j];
      svg << "<rect x=\"" << x + j * layout.cell << "\" y=\""
          << y + i * layout.cell << "\" width=\"" << layout.cell
          << "\" height=\"" << layout.cell << "\" fill=\""
          << HexColor(WeightColor(weight, 1.0f)) << "\"><title>"
          << XmlEscape(report.tokens[i] + " \u2192 " + report.tokens[j] + ": " +
                       Weight(weight))
          << "</title></rect>";
    }
  svg << "\n";
  const double half = layout.cell / 2.0;
  if (y_labels)
    for (std::int64_t i = 0; i < n; ++i)
      svg << "<text x=\"" << x - 4 << "\" y=\"" << y + i * layout.cell + half
          << "\" class=\"yl\">"
          << XmlEscape(ShortLabel(report.tokens[i], false)) << "</text>";
  if (x_labels)
    for (std::int64_t j = 0; j < n; ++j) {
      const double cx = x + j * layout.cell + half, cy = y + layout.panel + 4;
      svg << "<text transform=\"translate(" << cx << "," << cy
          << ") rotate(90)\" class=\"xl\">"
          << XmlEscape(ShortLabel(report.tokens[j], false)) << "</text>";
    }
  svg << "</g>\n";
}

}  // namespace

std::string XmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&#39;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

std::string RenderSvg(const AttentionReport& report) {
  const Layout layout = ComputeLayout(report);
  std::ostringstream svg;
  const int font = layout.cell >= 10 ? 11 : 9;
  svg << "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
      << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << layout.width
      << "\" height=\"" << layout.height << "\" viewBox=\"0 0 " << layout.width
      << " " << layout.height
      << "\" font-family=\"DejaVu Sans Mono, monospace\" font-size=\"" << font
      << "\">\n"
      << "<style>.cap{font-weight:bold}.yl{text-anchor:end;dominant-baseline:"
         "middle}"
         ".xl{dominant-baseline:middle}.title{font-size:14px}</style>\n"
      << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
      << "<text x=\"" << layout.gap << "\" y=\"16\" class=\"title\">"
      << XmlEscape("Attention: " + report.text) << "</text>\n";
  const std::size_t rows = report.layers.size(), columns = report.heads.size();
  for (std::size_t li = 0; li < rows; ++li)
    for (std::size_t hi = 0; hi < columns; ++hi)
      Panel(svg, report, layout, report.Map(li, hi), layout.PanelX(hi),
            layout.PanelY(li),
            PanelCaption(report.layers[li], report.heads[hi]), hi == 0,
            li + 1 == rows);
  if (!report.rollout.empty())
    Panel(svg, report, layout, report.rollout, layout.rollout_x,
          layout.rollout_y, "rollout (all layers)", true, true);
  // The colour scale: sqrt-spaced, like the cells.
  const int steps = 64;
  for (int s = 0; s < steps; ++s) {
    const float t = 1.0f - (s + 0.5f) / steps;
    svg << "<rect x=\"" << layout.scale_x << "\" y=\""
        << layout.scale_y + s * layout.panel / double(steps) << "\" width=\""
        << layout.scale_width << "\" height=\""
        << layout.panel / double(steps) + 0.5 << "\" fill=\""
        << HexColor(Viridis(t)) << "\"/>";
  }
  for (float tick : kScaleTicks) {
    const double y = layout.scale_y + (1.0 - std::sqrt(tick)) * layout.panel;
    svg << "<text x=\"" << layout.scale_x + layout.scale_width + 3 << "\" y=\""
        << y << "\" dominant-baseline=\"middle\">" << Weight(tick).substr(0, 4)
        << "</text>";
  }
  svg << "\n</svg>\n";
  return svg.str();
}

}  // namespace salience::viz
