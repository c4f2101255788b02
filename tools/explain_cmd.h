// `salience explain`: what all-MiniLM-L6-v2 attends to in a sentence.
// Writes a heatmap report (every layer x head plus attention rollout, or
// the --layer/--head zoom) as .html (interactive, self-contained), .svg or
// .png, and/or prints, per head, the tokens --from TOKEN attends to most.
#pragma once

#include <string>
#include <vector>

namespace CLI {
class App;
}

namespace salience::tools {

struct ExplainFlags {
  std::string text;
  std::string out;          // .html | .svg | .png
  std::string model;        // model directory; empty: find it
  std::vector<int> layers;  // empty: all
  std::vector<int> heads;   // empty: all
  std::string from;         // a token (or its 0-based index as "#3")
  int top = 0;              // 0: not given (5)
  int threads = 0;
};

void AddExplain(CLI::App& app, ExplainFlags& flags);
// Returns the process exit code.
int RunExplain(const ExplainFlags& flags);

}  // namespace salience::tools
