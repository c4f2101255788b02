// BERT's tokenizer as Hugging Face's BertTokenizerFast runs it for
// all-MiniLM-L6-v2 (tokenizer.json: BertNormalizer, BertPreTokenizer,
// WordPiece, TemplateProcessing "[CLS] $A [SEP]").
//
//   text --split out added tokens ([CLS], [MASK], ... matched verbatim)
//        --normalize: drop NUL, U+FFFD and control characters, whitespace to
//          ' ', spaces around CJK ideographs, NFD + drop Mn (strip accents),
//          lowercase
//        --pre-tokenize: split on whitespace, each punctuation char alone
//        --WordPiece: greedy longest prefix, "##" continuations, a word of
//          more than max_input_chars_per_word characters or with no match
//          becomes [UNK]
//        --truncate to max_length - 2, add [CLS] ... [SEP]
//
// Unicode categories, NFD and case mapping come from utf8proc.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "salience/status.h"

namespace salience::model {

struct Encoding {
  std::vector<std::int32_t> ids;    // [CLS] ... [SEP]
  std::vector<std::string> tokens;  // the vocabulary strings of `ids`
};

// A padded batch: [batch, seq_len] row-major, mask 1 = real token.
struct Batch {
  std::int64_t batch = 0;
  std::int64_t seq_len = 0;
  std::vector<std::int32_t> ids;
  std::vector<std::int32_t> lengths;  // real tokens per row
};

// The largest tokenizer.json read (the biggest vocabularies' files are a
// few tens of MB).
inline constexpr std::size_t kMaxTokenizerJsonBytes = std::size_t{256} << 20;
// The largest model.max_input_chars_per_word accepted: WordPiece's greedy
// longest-prefix search costs time quadratic (and worse) in a word's
// length, and longer words become [UNK] unsearched (BERT's: 100).
inline constexpr std::int64_t kMaxInputCharsPerWord = 1000;

class Tokenizer {
 public:
  // Reads tokenizer.json (normalizer flags, WordPiece vocab, added tokens);
  // every field read is type- and range-checked, the message naming it.
  static Status FromJsonFile(const std::string& path,
                             std::unique_ptr<Tokenizer>* tokenizer);
  static Status FromJsonText(std::string_view json, const std::string& label,
                             std::unique_ptr<Tokenizer>* tokenizer);

  // Fails only on invalid UTF-8 (the message says at which byte).
  Status Encode(std::string_view text, std::int64_t max_length,
                Encoding* encoding) const;
  // Encodes each text and pads to the longest with pad_id.
  Status EncodeBatch(const std::vector<std::string>& texts,
                     std::int64_t max_length, Batch* batch) const;

  // The normalized, pre-tokenized words (exposed for tests).
  Status Words(std::string_view text, std::vector<std::string>* words) const;

  const std::string& TokenString(std::int32_t id) const;
  std::int64_t vocab_size() const {
    return static_cast<std::int64_t>(id_to_token_.size());
  }
  std::int32_t cls_id() const { return cls_id_; }
  std::int32_t sep_id() const { return sep_id_; }
  std::int32_t pad_id() const { return pad_id_; }
  std::int32_t unk_id() const { return unk_id_; }

 private:
  Tokenizer() = default;
  void WordPiece(const std::string& word, std::vector<std::int32_t>* ids) const;

  bool clean_text_ = true;
  bool handle_chinese_chars_ = true;
  bool strip_accents_ = true;
  bool lowercase_ = true;
  std::string prefix_ = "##";
  std::int64_t max_input_chars_per_word_ = 100;
  std::unordered_map<std::string, std::int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::vector<std::pair<std::string, std::int32_t>> added_tokens_;
  std::int32_t cls_id_ = 101, sep_id_ = 102, pad_id_ = 0, unk_id_ = 100;
};

// Decodes UTF-8 into code points; false (and the offending byte's offset in
// *error_offset) on malformed input, overlongs, surrogates, > U+10FFFF.
bool DecodeUtf8(std::string_view text, std::vector<char32_t>* code_points,
                std::size_t* error_offset);
void AppendUtf8(char32_t code_point, std::string* out);

}  // namespace salience::model
