// The heatmap grid (layout.h) rasterized and written as an 8-bit RGB PNG
// through libpng; token labels in a built-in bitmap font (font_glyphs.h,
// ASCII; other characters print as '?').
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "salience/status.h"
#include "viz/report.h"

namespace salience::viz {

// An RGB image, row-major, 3 bytes a pixel.
struct Image {
  int width = 0, height = 0;
  std::vector<std::uint8_t> pixels;
};

Image RenderImage(const AttentionReport& report);
// Encodes `image` as PNG into `path`; the error names the file.
Status WritePng(const Image& image, const std::string& path);

}  // namespace salience::viz
