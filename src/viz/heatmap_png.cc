#include "viz/heatmap_png.h"

#include <png.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "viz/colormap.h"
#include "viz/font_glyphs.h"
#include "viz/layout.h"

namespace salience::viz {
namespace {

class Canvas {
 public:
  explicit Canvas(Image* image) : image_(image) {}

  void Fill(int x, int y, int w, int h, Rgb color) {
    for (int row = std::max(y, 0); row < std::min(y + h, image_->height); ++row)
      for (int col = std::max(x, 0); col < std::min(x + w, image_->width);
           ++col)
        Set(col, row, color, 255);
  }

  // Draws ASCII text with its top-left at (x, y); vertical text runs
  // downward, rotated 90 degrees clockwise (as the SVG's x labels).
  void Text(int x, int y, const std::string& text, bool vertical = false) {
    for (std::size_t k = 0; k < text.size(); ++k) {
      unsigned char c = static_cast<unsigned char>(text[k]);
      if (c < 32 || c > 126) c = '?';
      const std::uint8_t* glyph = kGlyphs[c - 32];
      for (int gy = 0; gy < kGlyphHeight; ++gy)
        for (int gx = 0; gx < kGlyphWidth; ++gx) {
          const std::uint8_t coverage = glyph[gy * kGlyphWidth + gx];
          if (coverage == 0) continue;
          const int offset = static_cast<int>(k) * kGlyphWidth;
          if (vertical)
            Set(x + (kGlyphHeight - 1 - gy), y + offset + gx, Rgb{0, 0, 0},
                coverage);
          else
            Set(x + offset + gx, y + gy, Rgb{0, 0, 0}, coverage);
        }
    }
  }

 private:
  void Set(int x, int y, Rgb color, std::uint8_t alpha) {
    if (x < 0 || y < 0 || x >= image_->width || y >= image_->height) return;
    std::uint8_t* pixel =
        &image_->pixels[(static_cast<std::size_t>(y) * image_->width + x) * 3];
    const auto blend = [alpha](std::uint8_t dst, std::uint8_t src) {
      return static_cast<std::uint8_t>(
          (src * alpha + dst * (255 - alpha) + 127) / 255);
    };
    pixel[0] = blend(pixel[0], color.r);
    pixel[1] = blend(pixel[1], color.g);
    pixel[2] = blend(pixel[2], color.b);
  }

  Image* image_;
};

void Panel(Canvas& canvas, const AttentionReport& report, const Layout& layout,
           const std::vector<float>& map, int x, int y,
           const std::string& caption, bool y_labels, bool x_labels) {
  const std::int64_t n = report.n();
  canvas.Text(x, y - kGlyphHeight - 1, caption);
  for (std::int64_t i = 0; i < n; ++i)
    for (std::int64_t j = 0; j < n; ++j)
      canvas.Fill(x + static_cast<int>(j) * layout.cell,
                  y + static_cast<int>(i) * layout.cell, layout.cell,
                  layout.cell, WeightColor(map[i * n + j], 1.0f));
  const int half = layout.cell / 2;
  if (y_labels)
    for (std::int64_t i = 0; i < n; ++i) {
      const std::string label = ShortLabel(report.tokens[i], true);
      canvas.Text(
          x - 4 - static_cast<int>(label.size()) * kGlyphWidth,
          y + static_cast<int>(i) * layout.cell + half - kGlyphHeight / 2,
          label);
    }
  if (x_labels)
    for (std::int64_t j = 0; j < n; ++j)
      canvas.Text(
          x + static_cast<int>(j) * layout.cell + half - kGlyphHeight / 2,
          y + layout.panel + 4, ShortLabel(report.tokens[j], true), true);
}

}  // namespace

Image RenderImage(const AttentionReport& report) {
  const Layout layout = ComputeLayout(report);
  Image image;
  image.width = layout.width;
  image.height = layout.height;
  image.pixels.assign(static_cast<std::size_t>(image.width) * image.height * 3,
                      255);
  Canvas canvas(&image);
  const std::string title = AsciiText("Attention: " + report.text);
  canvas.Text(layout.gap, 5, title.substr(0, layout.width / kGlyphWidth));
  const std::size_t rows = report.layers.size(), columns = report.heads.size();
  for (std::size_t li = 0; li < rows; ++li)
    for (std::size_t hi = 0; hi < columns; ++hi)
      Panel(canvas, report, layout, report.Map(li, hi), layout.PanelX(hi),
            layout.PanelY(li),
            PanelCaption(report.layers[li], report.heads[hi]), hi == 0,
            li + 1 == rows);
  if (!report.rollout.empty())
    Panel(canvas, report, layout, report.rollout, layout.rollout_x,
          layout.rollout_y, "rollout", true, true);
  for (int row = 0; row < layout.panel; ++row)
    canvas.Fill(layout.scale_x, layout.scale_y + row, layout.scale_width, 1,
                Viridis(1.0f - (row + 0.5f) / layout.panel));
  for (float tick : kScaleTicks) {
    char text[8];
    std::snprintf(text, sizeof text, "%.2f", tick);
    const int y = layout.scale_y +
                  static_cast<int>((1.0 - std::sqrt(tick)) * layout.panel);
    canvas.Text(layout.scale_x + layout.scale_width + 3, y - kGlyphHeight / 2,
                text);
  }
  return image;
}

Status WritePng(const Image& image, const std::string& path) {
  FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr)
    return Status(StatusCode::kInvalidArgument,
                  path + ": cannot write: " + std::strerror(errno));
  png_structp png =
      png_create_write_struct(PNG_LIBPNG_VER_STRING, nullptr, nullptr, nullptr);
  png_infop info = png != nullptr ? png_create_info_struct(png) : nullptr;
  if (png == nullptr || info == nullptr) {
    png_destroy_write_struct(&png, &info);
    std::fclose(file);
    return Status(StatusCode::kResourceExhausted,
                  path + ": libpng could not start");
  }
  // libpng reports errors by longjmp; nothing below owns resources that
  // the jump would leak apart from those released here.
  if (setjmp(png_jmpbuf(png))) {
    // libpng's writer fails on a short fwrite, whose errno says why.
    const int error = errno;
    png_destroy_write_struct(&png, &info);
    std::fclose(file);
    std::remove(path.c_str());  // a partial image would pass for a report
    return Status(StatusCode::kInvalidArgument,
                  path + ": cannot write: " + std::strerror(error));
  }
  png_init_io(png, file);
  png_set_IHDR(png, info, image.width, image.height, 8, PNG_COLOR_TYPE_RGB,
               PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT,
               PNG_FILTER_TYPE_DEFAULT);
  png_write_info(png, info);
  for (int row = 0; row < image.height; ++row)
    png_write_row(png, image.pixels.data() +
                           static_cast<std::size_t>(row) * image.width * 3);
  png_write_end(png, nullptr);
  png_destroy_write_struct(&png, &info);
  if (std::fclose(file) != 0) {
    const int error = errno;
    std::remove(path.c_str());
    return Status(StatusCode::kInvalidArgument,
                  path + ": cannot write: " + std::strerror(error));
  }
  return Status::Ok();
}

}  // namespace salience::viz
