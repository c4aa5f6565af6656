// Command-line flags: "--name value" or "--name=value", each declared once
// with its help text. Unknown flags, missing values and repeats of a
// non-repeatable flag are errors with one line naming the flag.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <vector>

#include "shared/base/result.h"

namespace ct {

struct FlagSpec {
  std::string name;  // without the leading "--"
  std::string arg;   // value placeholder for --help; empty for a switch
  std::string help;
  bool repeatable = false;
};

class Flags {
 public:
  explicit Flags(std::vector<FlagSpec> specs) : specs_(std::move(specs)) {}
  // Returns false with *err set on a bad command line.
  Result<void> parse(int argc, char** argv);
  bool has(const std::string& name) const { return values_.count(name) != 0; }
  std::string get(const std::string& name, const std::string& def = "") const;
  const std::vector<std::string>& all(const std::string& name) const;
  std::string usage(const std::string& program, const std::string& summary) const;

 private:
  std::vector<FlagSpec> specs_;
  std::map<std::string, std::vector<std::string>> values_;
};

// Parses a whole number of seconds (e.g. "10"), 0 < v <= max.
std::optional<unsigned> parse_seconds(const std::string& s, unsigned max);

}  // namespace ct
