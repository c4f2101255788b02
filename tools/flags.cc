#include "tools/flags.h"

#include <CLI/CLI.hpp>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <initializer_list>
#include <sstream>

namespace salience::tools {

CLI::Validator IntRange(std::int64_t min, std::int64_t max) {
  return CLI::Validator(
      [min, max](std::string& text) -> std::string {
        std::int64_t value = 0;
        const char* end = text.data() + text.size();
        const auto [used, error] = std::from_chars(text.data(), end, value);
        if (error == std::errc() && used == end && value >= min && value <= max)
          return "";
        return "expected an integer in [" + std::to_string(min) + ", " +
               std::to_string(max) + "], got '" + text + "'";
      },
      "INT in [" + std::to_string(min) + ", " + std::to_string(max) + "]");
}

CLI::Validator FiniteRange(double min, double max) {
  std::ostringstream range;
  range << "[" << min << ", " << max << "]";
  return CLI::Validator(
      [min, max, range = range.str()](std::string& text) -> std::string {
        char* end = nullptr;
        const double value = std::strtod(text.c_str(), &end);
        if (!text.empty() && end == text.c_str() + text.size() &&
            std::isfinite(value) && value >= min && value <= max)
          return "";
        return "expected a number in " + range + ", got '" + text + "'";
      },
      "NUMBER in " + range.str());
}

std::string GivenFlags(const CLI::App& command,
                       std::initializer_list<const char*> names) {
  std::string given;
  for (const char* name : names)
    if (command.count(name) > 0)
      given += (given.empty() ? "" : ", ") + std::string(name);
  return given;
}

}  // namespace salience::tools
