// libFuzzer target: config.json and sentence_bert_config.json parsing. The
// input is config.json's text, or, when it holds a NUL byte, config.json's
// text before it and sentence_bert_config.json's after. Every input must be
// accepted or refused with a Status (no exception escapes), and an accepted
// config must hold what the encoder relies on.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const std::size_t split = input.find('\0');
  std::optional<std::string_view> sentence_bert;
  if (split != std::string_view::npos) sentence_bert = input.substr(split + 1);
  salience::model::BertConfig config;
  const salience::Status status = salience::model::ParseBertConfig(
      input.substr(0, split), "config.json", sentence_bert,
      "sentence_bert_config.json", &config);
  if (!status.ok()) {
    if (status.message().empty()) std::abort();
    return 0;
  }
  using namespace salience::model;
  const auto in = [](std::int64_t value, std::int64_t min, std::int64_t max) {
    return value >= min && value <= max;
  };
  if (!in(config.vocab_size, 1, kMaxVocabSize) ||
      !in(config.hidden_size, 1, kMaxHiddenSize) ||
      !in(config.num_layers, 1, kMaxLayers) ||
      !in(config.num_heads, 1, kMaxHeads) ||
      config.head_dim() * config.num_heads != config.hidden_size ||
      !in(config.intermediate_size, 1, kMaxIntermediateSize) ||
      !in(config.max_position_embeddings, 2, kMaxPositions) ||
      !in(config.type_vocab_size, 1, kMaxTypeVocabSize) ||
      !in(config.max_seq_length, 2, config.max_position_embeddings) ||
      !std::isfinite(config.layer_norm_eps) || config.layer_norm_eps <= 0.0f)
    std::abort();
  return 0;
}
