// The heatmap writers on a small synthetic report: every token label and
// control is in the HTML, the SVG is well-formed enough to carry every
// cell and label, the PNG decodes with the right size and is not blank.
#include <gtest/gtest.h>
#include <png.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "viz/colormap.h"
#include "viz/heatmap_html.h"
#include "viz/heatmap_png.h"
#include "viz/heatmap_svg.h"

namespace salience::viz {
namespace {

AttentionReport SmallReport() {
  AttentionReport report;
  report.text = "The bank <of> \"river\" & 中";
  report.tokens = {"[CLS]", "the", "bank", "</script>", "中", "[SEP]"};
  report.model_layers = 2;
  report.model_heads = 2;
  report.layers = {0, 1};
  report.heads = {0, 1};
  const std::int64_t n = report.n();
  for (int m = 0; m < 4; ++m) {
    std::vector<float> map(n * n, 0.0f);
    for (std::int64_t i = 0; i < n; ++i) map[i * n + (i + m) % n] = 1.0f;
    report.maps.push_back(map);
  }
  report.rollout.assign(n * n, 1.0f / n);
  return report;
}

std::size_t Count(const std::string& text, const std::string& what) {
  std::size_t count = 0;
  for (std::size_t at = text.find(what); at != std::string::npos;
       at = text.find(what, at + 1))
    ++count;
  return count;
}

TEST(Colormap, EndsAndClamp) {
  EXPECT_EQ(HexColor(Viridis(0.0f)), "#440154");
  EXPECT_EQ(HexColor(Viridis(1.0f)), "#fde725");
  EXPECT_EQ(HexColor(Viridis(7.0f)), "#fde725");
  EXPECT_EQ(HexColor(Viridis(-1.0f)), "#440154");
}

TEST(Html, SelfContainedWithTokensControlsAndEscapedData) {
  const std::string html = RenderHtml(SmallReport());
  EXPECT_NE(html.find("id=\"layer-select\""), std::string::npos);
  EXPECT_NE(html.find("id=\"head-select\""), std::string::npos);
  EXPECT_NE(html.find("<option value=\"rollout\">"), std::string::npos);
  for (const char* token :
       {"[CLS]", ">the<", ">bank<", ">中<", "[SEP]", "&lt;/script&gt;"})
    EXPECT_NE(html.find(token), std::string::npos) << token;
  EXPECT_EQ(Count(html, "</script>"), 2u);  // only the two real ends
  EXPECT_EQ(html.find("http://"), html.find("http://www.w3.org/2000/svg"));
  EXPECT_EQ(html.find("https://"), std::string::npos);
  EXPECT_EQ(html.find("src="), std::string::npos);
}

TEST(Svg, EveryCellAndLabel) {
  const AttentionReport report = SmallReport();
  const std::string svg = RenderSvg(report);
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_NE(svg.find("</svg>"), std::string::npos);
  // 4 maps + rollout, n x n cells each, each with a <title>.
  EXPECT_EQ(Count(svg, "<title>"), 5u * 36u);
  EXPECT_NE(svg.find(">L1 H0<"), std::string::npos);
  EXPECT_NE(svg.find("&lt;/script&gt;"), std::string::npos);
  EXPECT_EQ(svg.find("</script>"), std::string::npos);
}

TEST(Png, DecodesWithTheLayoutSizeAndIsNotBlank) {
  const AttentionReport report = SmallReport();
  const Image image = RenderImage(report);
  ASSERT_GT(image.width, 100);
  ASSERT_GT(image.height, 50);
  const std::string path = ::testing::TempDir() + "/heatmap_test.png";
  ASSERT_TRUE(WritePng(image, path).ok());
  png_image decoded{};
  decoded.version = PNG_IMAGE_VERSION;
  ASSERT_TRUE(png_image_begin_read_from_file(&decoded, path.c_str()));
  EXPECT_EQ(static_cast<int>(decoded.width), image.width);
  EXPECT_EQ(static_cast<int>(decoded.height), image.height);
  decoded.format = PNG_FORMAT_RGB;
  std::vector<std::uint8_t> pixels(PNG_IMAGE_SIZE(decoded));
  ASSERT_TRUE(
      png_image_finish_read(&decoded, nullptr, pixels.data(), 0, nullptr));
  std::size_t white = 0, dark_purple = 0;
  for (std::size_t p = 0; p + 2 < pixels.size(); p += 3) {
    white += pixels[p] == 255 && pixels[p + 1] == 255 && pixels[p + 2] == 255;
    dark_purple += pixels[p] == 68 && pixels[p + 1] == 1 && pixels[p + 2] == 84;
  }
  EXPECT_LT(white, pixels.size() / 3);
  EXPECT_GT(dark_purple, 100u);
  EXPECT_EQ(pixels, image.pixels);
  std::remove(path.c_str());
}

TEST(Png, UnwritablePathNamesTheFile) {
  const Status status =
      WritePng(RenderImage(SmallReport()), "/nonexistent/dir/x.png");
  ASSERT_FALSE(status.ok());
  EXPECT_NE(status.message().find("/nonexistent/dir/x.png: cannot write"),
            std::string::npos);
}

}  // namespace
}  // namespace salience::viz
