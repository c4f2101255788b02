// The interactive report: one self-contained HTML file (inline CSS, JS and
// data; no network). Layer and head selectors, a grid of every selected
// layer x head, a zoomed heatmap with labelled axes, hover for the weight,
// and a chosen token's row (what it attends to) and column (what attends to
// it) highlighted with their top weights listed.
#pragma once

#include <string>

#include "viz/report.h"

namespace salience::viz {

std::string RenderHtml(const AttentionReport& report);

}  // namespace salience::viz
