// The heatmap grid as a standalone SVG document (layout.h), each cell a
// <rect> with a <title> giving "from -> to: weight".
#pragma once

#include <string>

#include "viz/report.h"

namespace salience::viz {

std::string RenderSvg(const AttentionReport& report);
// Escapes &, <, >, " and ' for XML/HTML text and attributes.
std::string XmlEscape(const std::string& text);

}  // namespace salience::viz
