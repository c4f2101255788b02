// Shared helpers of the model tests: where the golden files and the model
// lie, and reading a golden file with its header checked.
#pragma once

#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>

#include "model/config.h"

namespace salience::model::testing {

inline constexpr int kGoldenVersion = 1;

inline std::string GoldenPath(const std::string& name) {
  return std::string(SALIENCE_MODEL_GOLDEN_DIR) + "/" + name;
}

// The golden file's JSON after checking its header (format, version, kind).
inline nlohmann::json ReadGolden(const std::string& name,
                                 const std::string& kind) {
  std::ifstream in(GoldenPath(name));
  EXPECT_TRUE(in) << "cannot open " << GoldenPath(name);
  nlohmann::json json = nlohmann::json::parse(in);
  const nlohmann::json& header = json.at("header");
  EXPECT_EQ(header.at("format"), "salience-golden") << name;
  EXPECT_EQ(header.at("version"), kGoldenVersion) << name;
  EXPECT_EQ(header.at("kind"), kind) << name;
  EXPECT_EQ(header.at("generator"), "tests/model/make_golden.py") << name;
  return json;
}

// The installed model's directory, or "" (the test then skips).
inline std::string ModelDirOrEmpty() {
  std::string dir;
  return FindModelDir("", &dir).ok() ? dir : std::string();
}

#define SALIENCE_REQUIRE_MODEL(dir)                                      \
  const std::string dir = ::salience::model::testing::ModelDirOrEmpty(); \
  if (dir.empty())                                                       \
  GTEST_SKIP() << "model not installed (bash scripts/install_model_deps.sh)"

inline std::string ReadText(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace salience::model::testing
