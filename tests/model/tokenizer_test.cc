// The tokenizer against sentence-transformers' token ids (golden file), and
// its refusals: malformed tokenizer.json, invalid UTF-8.
#include "model/tokenizer.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "tests/model/test_util.h"

namespace salience::model {
namespace {

using testing::ReadGolden;

std::unique_ptr<Tokenizer> LoadReal(const std::string& dir) {
  std::unique_ptr<Tokenizer> tokenizer;
  const Status status =
      Tokenizer::FromJsonFile(dir + "/tokenizer.json", &tokenizer);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return tokenizer;
}

TEST(Tokenizer, MatchesSentenceTransformersTokenIds) {
  SALIENCE_REQUIRE_MODEL(dir);
  const auto tokenizer = LoadReal(dir);
  ASSERT_NE(tokenizer, nullptr);
  const nlohmann::json golden = ReadGolden("tokens.json", "tokens");
  const std::int64_t max_length = golden.at("header").at("max_seq_length");
  EXPECT_EQ(max_length, 256);
  int cases = 0;
  for (const nlohmann::json& item : golden.at("cases")) {
    const std::string text = item.at("text");
    const auto expected = item.at("ids").get<std::vector<std::int32_t>>();
    Encoding encoding;
    ASSERT_TRUE(tokenizer->Encode(text, max_length, &encoding).ok()) << text;
    EXPECT_EQ(encoding.ids, expected) << "text: " << text;
    ++cases;
  }
  EXPECT_GE(cases, 30);
}

TEST(Tokenizer, MaxSeqLengthComesFromSentenceBertConfig) {
  SALIENCE_REQUIRE_MODEL(dir);
  BertConfig config;
  ASSERT_TRUE(LoadBertConfig(dir, &config).ok());
  EXPECT_EQ(config.max_seq_length, 256);
  EXPECT_EQ(config.max_position_embeddings, 512);
}

TEST(Tokenizer, BatchPadsToTheLongestAndRecordsLengths) {
  SALIENCE_REQUIRE_MODEL(dir);
  const auto tokenizer = LoadReal(dir);
  Batch batch;
  ASSERT_TRUE(
      tokenizer->EncodeBatch({"a b c d", "", "hello"}, 256, &batch).ok());
  EXPECT_EQ(batch.batch, 3);
  EXPECT_EQ(batch.seq_len, 6);
  EXPECT_EQ(batch.lengths, (std::vector<std::int32_t>{6, 2, 3}));
  EXPECT_EQ(batch.ids[1 * 6 + 0], tokenizer->cls_id());
  EXPECT_EQ(batch.ids[1 * 6 + 1], tokenizer->sep_id());
  EXPECT_EQ(batch.ids[1 * 6 + 2], tokenizer->pad_id());
}

TEST(Tokenizer, TruncatesToMaxLengthKeepingSpecialTokens) {
  SALIENCE_REQUIRE_MODEL(dir);
  const auto tokenizer = LoadReal(dir);
  Encoding encoding;
  ASSERT_TRUE(tokenizer->Encode("word word word word word", 4, &encoding).ok());
  EXPECT_EQ(encoding.ids.size(), 4u);
  EXPECT_EQ(encoding.ids.front(), tokenizer->cls_id());
  EXPECT_EQ(encoding.ids.back(), tokenizer->sep_id());
  EXPECT_EQ(encoding.tokens[1], "word");
}

TEST(Tokenizer, RefusesInvalidUtf8NamingTheByte) {
  SALIENCE_REQUIRE_MODEL(dir);
  const auto tokenizer = LoadReal(dir);
  Encoding encoding;
  for (const std::string bad :
       {std::string("ab\xff"), std::string("\xc3"),
        std::string("x\xed\xa0\x80"), std::string("\xc0\xaf")}) {
    const Status status = tokenizer->Encode(bad, 256, &encoding);
    ASSERT_FALSE(status.ok());
    EXPECT_NE(status.message().find("invalid UTF-8 at byte"), std::string::npos)
        << status.message();
  }
}

const char* kTinyTokenizer = R"({
  "normalizer": {"type": "BertNormalizer", "clean_text": true,
                 "handle_chinese_chars": true, "strip_accents": null,
                 "lowercase": true},
  "added_tokens": [{"id": 2, "content": "[CLS]"}, {"id": 3, "content": "[SEP]"}],
  "model": {"type": "WordPiece", "unk_token": "[UNK]",
            "continuing_subword_prefix": "##", "max_input_chars_per_word": 5,
            "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3,
                      "un": 4, "##aff": 5, "##able": 6, "!": 7, "cafe": 8}}
})";

TEST(Tokenizer, WordPieceRulesOnATinyVocabulary) {
  std::unique_ptr<Tokenizer> tokenizer;
  ASSERT_TRUE(
      Tokenizer::FromJsonText(kTinyTokenizer, "tiny.json", &tokenizer).ok());
  Encoding encoding;
  ASSERT_TRUE(
      tokenizer->Encode("UNAFFABLE! Café unaffablex xyz", 64, &encoding).ok());
  // "unaffable" has 9 > 5 characters: [UNK] by the length rule.
  EXPECT_EQ(encoding.ids, (std::vector<std::int32_t>{2, 1, 7, 8, 1, 1, 3}));
  ASSERT_TRUE(tokenizer->Encode("unaff", 64, &encoding).ok());
  EXPECT_EQ(encoding.ids, (std::vector<std::int32_t>{2, 4, 5, 3}));
  std::vector<std::string> words;
  ASSERT_TRUE(tokenizer->Words("Ab,c 中文\tD\x01", &words).ok());
  EXPECT_EQ(words, (std::vector<std::string>{"ab", ",", "c", "中", "文", "d"}));
}

TEST(Tokenizer, RefusesMalformedTokenizerJson) {
  std::unique_ptr<Tokenizer> tokenizer;
  const auto expect_error = [&](const std::string& json,
                                const std::string& fragment) {
    const Status status = Tokenizer::FromJsonText(json, "bad.json", &tokenizer);
    ASSERT_FALSE(status.ok()) << json;
    EXPECT_NE(status.message().find("bad.json"), std::string::npos)
        << status.message();
    EXPECT_NE(status.message().find(fragment), std::string::npos)
        << status.message();
  };
  expect_error("{", "not valid JSON");
  expect_error("[]", "top level is not an object");
  expect_error(R"({"model": {"type": "BPE", "vocab": {}}})", "model.type");
  expect_error(R"({"model": {"type": "WordPiece", "vocab": {}}})", "non-empty");
  expect_error(R"({"model": {"type": "WordPiece", "vocab": {"a": 7}}})",
               "id must be in");
  expect_error(R"({"model": {"type": "WordPiece", "vocab": {"a": 0}}})",
               "has no [UNK]");
  expect_error(R"({"nomodel": 1})", "model: expected an object");
  // Every field read is type- and range-checked, the message naming it.
  const auto with = [](const std::string& model_fields,
                       const std::string& rest = "") {
    return std::string(R"({"model": {"type": "WordPiece", )") + model_fields +
           R"(, "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2, "[SEP]": 3}})" +
           rest + "}";
  };
  for (const char* value : {"-1", "0", "1001", "1e3", "\"100\"", "null"})
    expect_error(with(std::string(R"("max_input_chars_per_word": )") + value),
                 "model.max_input_chars_per_word: expected an integer");
  expect_error(with(R"("max_input_chars_per_word": -1)"),
               "expected an integer in [1, 1000], got -1");
  expect_error(with(R"("continuing_subword_prefix": 3)"),
               "model.continuing_subword_prefix: expected a string, got 3");
  expect_error(with(R"("unk_token": ["[UNK]"])"),
               "model.unk_token: expected a string");
  expect_error(with(R"("unk_token": "<unk>")"), "model.vocab has no <unk>");
  expect_error(
      with(R"("continuing_subword_prefix": "##")",
           R"(, "normalizer": {"type": "BertNormalizer", "lowercase": 1})"),
      "normalizer.lowercase: expected true or false, got 1");
  expect_error(
      with(
          R"("continuing_subword_prefix": "##")",
          R"(, "normalizer": {"type": "BertNormalizer", "strip_accents": "yes"})"),
      "normalizer.strip_accents: expected true, false or null");
  expect_error(with(R"("continuing_subword_prefix": "##")",
                    R"(, "normalizer": {"type": "Lowercase"})"),
               "normalizer.type: expected \"BertNormalizer\"");
  expect_error(with(R"("continuing_subword_prefix": "##")",
                    R"(, "added_tokens": [{"id": 4, "content": "[MASK]"}])"),
               "added_tokens[0]: expected {\"content\": a string, \"id\": an "
               "id in [0, 4)}");
  expect_error(with(R"("continuing_subword_prefix": "##")",
                    R"(, "added_tokens": [{"id": -1, "content": "[MASK]"}])"),
               "added_tokens[0]");
  expect_error(with(R"("continuing_subword_prefix": "##")",
                    R"(, "added_tokens": [{"id": 1, "content": 5}])"),
               "added_tokens[0]");
  expect_error(with(R"("continuing_subword_prefix": "##")",
                    R"(, "added_tokens": {"id": 1})"),
               "added_tokens: expected an array");
  std::unique_ptr<Tokenizer> missing;
  const Status status =
      Tokenizer::FromJsonFile("/nonexistent/tokenizer.json", &missing);
  EXPECT_NE(status.message().find(
                "/nonexistent/tokenizer.json: cannot open: No such file"),
            std::string::npos)
      << status.message();
  EXPECT_NE(Tokenizer::FromJsonFile("/", &missing)
                .message()
                .find("/: is a directory"),
            std::string::npos);
}

// "normalizer": null is Hugging Face's "no normalizer": the text is split
// as it is (no lowercasing, no accent stripping).
TEST(Tokenizer, NullNormalizerLeavesTheTextAlone) {
  std::unique_ptr<Tokenizer> tokenizer;
  ASSERT_TRUE(Tokenizer::FromJsonText(
                  R"({"normalizer": null, "model": {"type": "WordPiece",
                      "vocab": {"[PAD]": 0, "[UNK]": 1, "[CLS]": 2,
                                "[SEP]": 3, "Café": 4, "cafe": 5}}})",
                  "null.json", &tokenizer)
                  .ok());
  Encoding encoding;
  ASSERT_TRUE(tokenizer->Encode("Café cafe", 16, &encoding).ok());
  EXPECT_EQ(encoding.ids, (std::vector<std::int32_t>{2, 4, 5, 3}));
}

}  // namespace
}  // namespace salience::model
