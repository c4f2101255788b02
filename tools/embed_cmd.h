// `salience embed`: sentence embeddings from all-MiniLM-L6-v2 running on
// salience's attention kernel. Texts from arguments and/or --input (one a
// line, streamed: read, batched and written a window at a time, in memory
// that does not grow with the input); JSON lines on stdout, or --out FILE
// (.npy, .jsonl or .json), or the cosine similarity matrix; --time /
// --bench report sentences per second.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace salience::tools {

struct EmbedFlags {
  std::vector<std::string> texts;
  std::string input;  // a file, one text a line; "-" = stdin
  std::string model;  // model directory; empty: find it
  std::string out;    // .npy | .jsonl | .json; empty: JSON lines on stdout
  bool similarity = false;  // print the cosine matrix instead
  int batch_size = 32;
  int threads = 0;       // 0: all cores
  bool time = false;     // time the embedding (stderr, one JSON line)
  int repeats = 0;       // timed runs for --time / --bench; 0: not given (5)
  int bench = 0;         // > 0: that many synthetic ~128-token texts
  bool progress = true;  // a progress bar when stderr is a terminal
};

void AddEmbed(CLI::App& app, EmbedFlags& flags);
// Returns the process exit code.
int RunEmbed(const EmbedFlags& flags);

}  // namespace salience::tools
