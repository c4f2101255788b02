// Validators shared by the subcommands' flags: a value outside its range
// is a usage error naming the flag, never a value that wraps, saturates or
// passes as NaN.
#pragma once

#include <cstdint>
#include <string>

namespace CLI {
class App;
class Validator;
}  // namespace CLI

namespace salience::tools {

// A whole decimal integer in [min, max] (no sign tricks, exponents or
// trailing text): "4294967360" for an int32 flag is an error, not 64.
CLI::Validator IntRange(std::int64_t min, std::int64_t max);

// A finite number in [min, max]: "nan" and "inf" are errors.
CLI::Validator FiniteRange(double min, double max);

// Flags of `command` given on the command line (count() > 0) among `names`,
// joined as "--a, --b"; empty when none was. Used to refuse flags that the
// chosen mode would ignore.
std::string GivenFlags(const CLI::App& command,
                       std::initializer_list<const char*> names);

}  // namespace salience::tools
