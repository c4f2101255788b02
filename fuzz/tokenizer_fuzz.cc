// libFuzzer target: the tokenizer. The first byte picks the mode:
//   even  the rest is a tokenizer.json to load (then used on a fixed text)
//   odd   the rest is text for a small fixed BERT vocabulary
// Every input must be accepted or refused with a Status, and an encoding
// must start with [CLS], end with [SEP] and respect max_length.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "model/tokenizer.h"

namespace {

constexpr std::string_view kVocabJson = R"({
  "normalizer": {"type": "BertNormalizer", "clean_text": true,
                 "handle_chinese_chars": true, "strip_accents": null, "lowercase": true},
  "added_tokens": [{"id": 2, "content": "[CLS]"}, {"id": 3, "content": "[SEP]"},
                   {"id": 9, "content": "[MASK]"}],
  "model": {"type": "WordPiece", "unk_token": "[UNK]", "continuing_subword_prefix": "##",
            "max_input_chars_per_word": 100,
            "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3, "a": 4, "##a": 5,
                      "b": 6, "##b": 7, "!": 8, "[MASK]": 9, "中": 10, "e": 11}}})";

void Check(const salience::model::Tokenizer& tokenizer, std::string_view text) {
  for (std::int64_t max_length : {2, 7, 512}) {
    salience::model::Encoding encoding;
    if (!tokenizer.Encode(text, max_length, &encoding).ok()) return;
    if (encoding.ids.size() < 2 ||
        static_cast<std::int64_t>(encoding.ids.size()) > max_length ||
        encoding.ids.front() != tokenizer.cls_id() ||
        encoding.ids.back() != tokenizer.sep_id() ||
        encoding.tokens.size() != encoding.ids.size())
      std::abort();
    for (std::int32_t id : encoding.ids)
      if (id < 0 || id >= tokenizer.vocab_size()) std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data,
                                      std::size_t size) {
  if (size == 0) return 0;
  const std::string_view rest(reinterpret_cast<const char*>(data + 1),
                              size - 1);
  std::unique_ptr<salience::model::Tokenizer> tokenizer;
  if (data[0] % 2 == 0) {
    if (!salience::model::Tokenizer::FromJsonText(rest, "fuzz.json", &tokenizer)
             .ok())
      return 0;
    Check(*tokenizer, "Hello, wörld! 中文 [MASK] unaffable");
    return 0;
  }
  static std::unique_ptr<salience::model::Tokenizer> fixed = [] {
    std::unique_ptr<salience::model::Tokenizer> t;
    if (!salience::model::Tokenizer::FromJsonText(kVocabJson, "vocab", &t).ok())
      std::abort();
    return t;
  }();
  Check(*fixed, rest);
  return 0;
}
