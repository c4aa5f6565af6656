#include "shared/os/flags.h"

#include <charconv>

namespace ct {

Result<void> Flags::parse(int argc, char** argv) {
  static const std::vector<std::string> kEmpty;
  for (int i = 1; i < argc; i++) {
    std::string a = argv[i];
    if (a.rfind("--", 0) != 0 || a.size() < 3)
      return fail("unexpected argument '" + a + "' (flags start with --; see --help)");
    std::string name = a.substr(2), value;
    bool inline_value = false;
    if (auto eq = name.find('='); eq != std::string::npos) {
      value = name.substr(eq + 1);
      name = name.substr(0, eq);
      inline_value = true;
    }
    const FlagSpec* spec = nullptr;
    for (const auto& s : specs_)
      if (s.name == name) spec = &s;
    if (spec == nullptr) {
      return fail("unknown flag --" + name + " (see --help)");
    }
    if (spec->arg.empty()) {
      if (inline_value) {
        return fail("flag --" + name + " takes no value");
      }
    } else if (!inline_value) {
      if (i + 1 >= argc) {
        return fail("flag --" + name + " needs a value (" + spec->arg + ")");
      }
      value = argv[++i];
    }
    if (!spec->arg.empty() && value.empty()) {
      return fail("flag --" + name + " needs a non-empty value (" + spec->arg + ")");
    }
    auto& v = values_[name];
    if (!v.empty() && !spec->repeatable) {
      return fail("flag --" + name + " given more than once");
    }
    v.push_back(value);
  }
  (void)kEmpty;
  return {};
}

std::string Flags::get(const std::string& name, const std::string& def) const {
  auto it = values_.find(name);
  return it == values_.end() || it->second.empty() ? def : it->second.back();
}

const std::vector<std::string>& Flags::all(const std::string& name) const {
  static const std::vector<std::string> kEmpty;
  auto it = values_.find(name);
  return it == values_.end() ? kEmpty : it->second;
}

std::string Flags::usage(const std::string& program, const std::string& summary) const {
  std::string out = "usage: " + program + " [flags]\n\n" + summary + "\n\nflags:\n";
  for (const auto& s : specs_) {
    std::string left = "  --" + s.name + (s.arg.empty() ? "" : " " + s.arg);
    if (left.size() < 34)
      left.resize(34, ' ');
    else
      left += "\n" + std::string(34, ' ');
    out += left + s.help + (s.repeatable ? " (repeatable)" : "") + "\n";
  }
  return out;
}

std::optional<unsigned> parse_seconds(const std::string& s, unsigned max) {
  unsigned v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size() || v == 0 || v > max) return std::nullopt;
  return v;
}

}  // namespace ct
