// The encoder against sentence-transformers (embeddings) and transformers'
// eager attention (probabilities), plus batching and bad model directories.
#include "model/encoder.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "tests/model/test_util.h"

namespace salience::model {
namespace {

using testing::ReadGolden;

std::unique_ptr<Encoder> LoadEncoder(const std::string& dir) {
  std::unique_ptr<Encoder> encoder;
  const Status status = Encoder::Load(dir, &encoder);
  EXPECT_TRUE(status.ok()) << status.ToString();
  return encoder;
}

TEST(Encoder, EmbeddingsMatchSentenceTransformers) {
  SALIENCE_REQUIRE_MODEL(dir);
  const auto encoder = LoadEncoder(dir);
  ASSERT_NE(encoder, nullptr);
  const nlohmann::json golden = ReadGolden("embeddings.json", "embeddings");
  std::vector<std::string> texts;
  for (const auto& item : golden.at("cases")) texts.push_back(item.at("text"));
  EncoderOutput output;
  ASSERT_TRUE(encoder->Embed(texts, {}, 0, &output).ok());
  const std::int64_t dim = golden.at("header").at("dim");
  ASSERT_EQ(output.hidden_size, dim);
  double worst_cosine = 1.0, worst_abs = 0.0;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const auto expected =
        golden.at("cases")[i].at("embedding").get<std::vector<float>>();
    double dot = 0, norm_a = 0, norm_b = 0, max_abs = 0;
    for (std::int64_t d = 0; d < dim; ++d) {
      const double a = output.embeddings[i * dim + d], b = expected[d];
      dot += a * b;
      norm_a += a * a;
      norm_b += b * b;
      max_abs = std::max(max_abs, std::abs(a - b));
    }
    const double cosine = dot / std::sqrt(norm_a * norm_b);
    worst_cosine = std::min(worst_cosine, cosine);
    worst_abs = std::max(worst_abs, max_abs);
    EXPECT_GE(cosine, 0.9999) << "text " << i << ": " << texts[i].substr(0, 40);
    EXPECT_LE(max_abs, 1e-4) << "text " << i << ": " << texts[i].substr(0, 40);
  }
  std::printf(
      "embeddings vs sentence-transformers: min cosine %.9f, max |diff| %.3g\n",
      worst_cosine, worst_abs);
}

TEST(Encoder, AttentionProbabilitiesMatchEagerAttention) {
  SALIENCE_REQUIRE_MODEL(dir);
  const auto encoder = LoadEncoder(dir);
  ASSERT_NE(encoder, nullptr);
  const nlohmann::json golden = ReadGolden("attention.json", "attention");
  for (const auto& item : golden.at("cases")) {
    const std::string text = item.at("text");
    const int layers = item.at("layers"), heads = item.at("heads");
    AttentionRequest request;
    for (int l = 0; l < layers; ++l) request.layers.push_back(l);
    EncoderOutput output;
    ASSERT_TRUE(encoder->Embed({text}, request, 0, &output).ok());
    const SequenceAttention& attention = output.attention.at(0);
    const auto ids = item.at("ids").get<std::vector<std::int32_t>>();
    const std::int64_t n = static_cast<std::int64_t>(ids.size());
    ASSERT_EQ(attention.length, n) << text;
    double max_diff = 0;
    for (int l = 0; l < layers; ++l) {
      const auto expected = item.at("probs")[l].get<std::vector<float>>();
      ASSERT_EQ(expected.size(), static_cast<std::size_t>(heads * n * n));
      for (int h = 0; h < heads; ++h) {
        const float* probs = attention.At(l, h);
        for (std::int64_t e = 0; e < n * n; ++e)
          max_diff = std::max(
              max_diff, std::abs(double(probs[e]) - expected[h * n * n + e]));
      }
    }
    EXPECT_LE(max_diff, 1e-5) << text;
    std::printf("attention vs eager (%lld tokens): max |diff| %.3g\n",
                static_cast<long long>(n), max_diff);
  }
}

TEST(Encoder, OnlyRequestedLayersAndHeadsAndRowsSumToOne) {
  SALIENCE_REQUIRE_MODEL(dir);
  const auto encoder = LoadEncoder(dir);
  AttentionRequest request{{2, 5}, {0, 7}};
  EncoderOutput output;
  ASSERT_TRUE(encoder
                  ->Embed({"The bank of the river was muddy.", "Hi"}, request,
                          1, &output)
                  .ok());
  ASSERT_EQ(output.attention.size(), 2u);
  for (const SequenceAttention& seq : output.attention) {
    ASSERT_EQ(seq.probs.size(), 4u);
    for (const auto& map : seq.probs) {
      ASSERT_EQ(map.size(), static_cast<std::size_t>(seq.length * seq.length));
      for (std::int64_t i = 0; i < seq.length; ++i) {
        double sum = 0;
        for (std::int64_t j = 0; j < seq.length; ++j)
          sum += map[i * seq.length + j];
        EXPECT_NEAR(sum, 1.0, 1e-5);
      }
    }
  }
  EXPECT_FALSE(
      encoder->Embed({"x"}, AttentionRequest{{6}, {}}, 1, &output).ok());
  EXPECT_FALSE(
      encoder->Embed({"x"}, AttentionRequest{{0}, {12}}, 1, &output).ok());
}

TEST(Encoder, BatchedEqualsOneAtATimeAndThreadsAgree) {
  SALIENCE_REQUIRE_MODEL(dir);
  const auto encoder = LoadEncoder(dir);
  const std::vector<std::string> texts = {
      "short", "a somewhat longer sentence here", ""};
  EncoderOutput batched, single;
  ASSERT_TRUE(encoder->Embed(texts, {}, 2, &batched).ok());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    ASSERT_TRUE(encoder->Embed({texts[i]}, {}, 1, &single).ok());
    for (std::int64_t d = 0; d < single.hidden_size; ++d)
      EXPECT_NEAR(batched.embeddings[i * single.hidden_size + d],
                  single.embeddings[d], 1e-6);
  }
}

// Enough tokens that each of two threads runs several groups (the encoder
// groups about 512 tokens): embeddings and attention maps must not depend on
// where the batch is split (beyond rounding: OpenBLAS blocks products of
// other row counts differently, about 1e-6 on a probability).
TEST(Encoder, ManyGroupsEqualOneAtATime) {
  SALIENCE_REQUIRE_MODEL(dir);
  const auto encoder = LoadEncoder(dir);
  std::vector<std::string> texts;
  std::string text = "the river bank";
  for (int i = 0; i < 24; ++i) {
    texts.push_back(text);
    for (int word = 0; word < 9; ++word)
      text += (word % 3 == 0 ? " muddy" : word % 3 == 1 ? " water" : " stone");
  }
  const AttentionRequest request{{1, 4}, {3}};
  EncoderOutput batched, single;
  ASSERT_TRUE(encoder->Embed(texts, request, 2, &batched).ok());
  std::int64_t tokens = 0;
  for (const SequenceAttention& seq : batched.attention) tokens += seq.length;
  ASSERT_GT(tokens, 4 * 512);
  for (std::size_t i = 0; i < texts.size(); ++i) {
    ASSERT_TRUE(encoder->Embed({texts[i]}, request, 1, &single).ok());
    for (std::int64_t d = 0; d < single.hidden_size; ++d)
      ASSERT_NEAR(batched.embeddings[i * single.hidden_size + d],
                  single.embeddings[d], 1e-6)
          << "text " << i;
    const SequenceAttention &a = batched.attention[i], &b = single.attention[0];
    ASSERT_EQ(a.length, b.length);
    for (std::size_t map = 0; map < 2; ++map)
      for (std::int64_t e = 0; e < a.length * a.length; ++e)
        ASSERT_NEAR(a.probs[map][e], b.probs[map][e], 1e-5)
            << "text " << i << " map " << map;
  }
}

// A copy of the model directory whose config or weights are then damaged.
class BrokenModel : public ::testing::Test {
 protected:
  void SetUp() override {
    source_ = testing::ModelDirOrEmpty();
    if (source_.empty()) GTEST_SKIP() << "model not installed";
    dir_ = ::testing::TempDir() + "/broken_model_" + std::to_string(::getpid());
    std::filesystem::create_directories(dir_);
    for (const char* name :
         {"config.json", "tokenizer.json", "sentence_bert_config.json"})
      std::filesystem::copy_file(
          source_ + "/" + name, dir_ + "/" + name,
          std::filesystem::copy_options::overwrite_existing);
    std::filesystem::create_symlink(source_ + "/model.safetensors",
                                    dir_ + "/model.safetensors");
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  void Write(const std::string& name, const std::string& text) {
    std::filesystem::remove(dir_ + "/" + name);
    std::ofstream(dir_ + "/" + name, std::ios::binary) << text;
  }
  std::string LoadError() {
    std::unique_ptr<Encoder> encoder;
    const Status status = Encoder::Load(dir_, &encoder);
    EXPECT_FALSE(status.ok());
    return status.message();
  }
  std::string source_, dir_;
};

TEST_F(BrokenModel, WrongHiddenSizeForTheWeights) {
  std::string config = testing::ReadText(source_ + "/config.json");
  config.replace(config.find("\"intermediate_size\": 1536"), 25,
                 "\"intermediate_size\": 1024");
  Write("config.json", config);
  const std::string message = LoadError();
  EXPECT_NE(
      message.find("model.safetensors: tensor "
                   "'encoder.layer.0.intermediate.dense.weight' "
                   "has shape [1536, 384], config.json implies [1024, 384]"),
      std::string::npos)
      << message;
}

TEST_F(BrokenModel, TruncatedWeights) {
  const std::string weights = testing::ReadText(source_ + "/model.safetensors");
  Write("model.safetensors", weights.substr(0, weights.size() / 2));
  const std::string message = LoadError();
  EXPECT_NE(message.find("model.safetensors: "), std::string::npos) << message;
  EXPECT_NE(message.find("past the data buffer"), std::string::npos) << message;
}

TEST_F(BrokenModel, MalformedConfigAndTokenizer) {
  Write("config.json", "{\"model_type\": \"bert\", ");
  EXPECT_NE(LoadError().find("config.json: not valid JSON"), std::string::npos);
  std::filesystem::copy_file(source_ + "/config.json", dir_ + "/config.json",
                             std::filesystem::copy_options::overwrite_existing);
  Write("tokenizer.json", "{\"model\": 3}");
  EXPECT_NE(LoadError().find("tokenizer.json: "), std::string::npos);
}

// The layer count is checked against the weights before anything is sized
// by it: a config of fewer layers must not run part of the model.
TEST_F(BrokenModel, LayerCountOtherThanTheWeights) {
  const std::string config = testing::ReadText(source_ + "/config.json");
  const auto with_layers = [&](const std::string& layers) {
    const std::string field = "\"num_hidden_layers\": 6";
    std::string text = config;
    text.replace(text.find(field), field.size(),
                 "\"num_hidden_layers\": " + layers);
    Write("config.json", text);
    return LoadError();
  };
  std::string message = with_layers("3");
  EXPECT_NE(message.find("model.safetensors: holds layers 3..5"),
            std::string::npos)
      << message;
  message = with_layers("1000");
  EXPECT_NE(message.find("\"num_hidden_layers\" is 1000, but"),
            std::string::npos)
      << message;
  message = with_layers("4611686018427387904");
  EXPECT_NE(message.find("\"num_hidden_layers\" must be an integer in [1, "
                         "1024], got 4611686018427387904"),
            std::string::npos)
      << message;
}

// A header whose length is not a multiple of 4 leaves every float of the
// data unaligned (the format allows it): the model loads all the same and
// embeds exactly as from the aligned file.
TEST_F(BrokenModel, WeightsUnalignedForFloatLoad) {
  const std::string weights = testing::ReadText(source_ + "/model.safetensors");
  std::uint64_t length = 0;
  for (int i = 7; i >= 0; --i)
    length = (length << 8) | static_cast<unsigned char>(weights[i]);
  for (int pad : {1, 2, 3}) {
    std::string padded(8, '\0');
    const std::uint64_t new_length = length + pad;
    for (int i = 0; i < 8; ++i)
      padded[i] = static_cast<char>((new_length >> (8 * i)) & 0xFF);
    padded += weights.substr(8, length) + std::string(pad, ' ') +
              weights.substr(8 + length);
    Write("model.safetensors", padded);
    std::unique_ptr<Encoder> unaligned, aligned;
    Status status = Encoder::Load(dir_, &unaligned);
    ASSERT_TRUE(status.ok()) << status.ToString();
    ASSERT_TRUE(Encoder::Load(source_, &aligned).ok());
    EncoderOutput a, b;
    ASSERT_TRUE(unaligned->Embed({"The bank of the river."}, {}, 1, &a).ok());
    ASSERT_TRUE(aligned->Embed({"The bank of the river."}, {}, 1, &b).ok());
    EXPECT_EQ(a.embeddings, b.embeddings) << "padding " << pad;
  }
}

TEST(Encoder, MissingModelDirectory) {
  std::unique_ptr<Encoder> encoder;
  const Status status = Encoder::Load("/nonexistent/model", &encoder);
  ASSERT_FALSE(status.ok());
  EXPECT_EQ(status.message(),
            "/nonexistent/model: model directory does not exist");
}

}  // namespace
}  // namespace salience::model
