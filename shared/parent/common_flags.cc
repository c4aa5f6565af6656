#include "shared/parent/common_flags.h"

#include <pwd.h>
#include <unistd.h>

#include <cstdio>

#include "shared/base/log.h"
#include "shared/wire/limits.h"

namespace ct {

int usage_error(const char* daemon, const std::string& msg) {
  std::fprintf(stderr, "%s: %s\n", daemon, msg.c_str());
  return kExitUsage;
}

std::vector<FlagSpec> identity_flag_specs(const IdentityWording& w) {
  const std::string peer = w.peer, pin = std::string("--") + w.peer + "-pin";
  const std::string beside = peer + ".pin beside --" + w.cert_flag;
  return {
      {w.cert_flag, "FILE", std::string("PEM certificate chain presented to ") + w.presented_to},
      {w.key_flag, "FILE", std::string("PEM private key of --") + w.cert_flag + " (unencrypted)"},
      {"ca-cert", "FILE",
       std::string("PEM CA certificate(s) that ") + w.peer_certs + " must chain to"},
      {peer + "-pin-file", "FILE",
       "more pins, one sha256//BASE64 per line, at most 16 in all (re-read on SIGHUP and when it "
       "changes; a file without a pin is refused; default: " +
           beside + ")"},
      {peer + "-pin", "sha256//BASE64",
       std::string("accept only ") + w.peers_whose +
           " whose certificate key hashes to this pin (curl's form)",
       true},
      {"insecure-no-pin", "",
       "accept any " + peer + " certificate the CA signed (no pin); without it the " + w.self +
           " refuses to start when neither " + pin + ", " + pin + "-file nor " + beside +
           " gives a pin"},
  };
}

std::vector<FlagSpec> last_flag_specs() {
  return {
      {"user", "NAME",
       "when started as root, the user the child processes run as (default: cloudtaser if it "
       "exists, else nobody)"},
      {"log-level", "LEVEL", "error, warn, info (default) or debug"},
      {"version", "", "print the version and exit"},
      {"help", "", "print this help and exit"},
  };
}

std::vector<FlagSpec> join_flag_specs(std::initializer_list<std::vector<FlagSpec>> parts) {
  std::vector<FlagSpec> out;
  for (const auto& part : parts) out.insert(out.end(), part.begin(), part.end());
  return out;
}

Result<void> resolve_run_user(const std::string& name, ProcSettings* s) {
  if (geteuid() != 0) {
    if (!name.empty()) {
      const passwd* pw = getpwnam(name.c_str());
      if (pw == nullptr || pw->pw_uid != geteuid())
        return fail("--user " + name + " needs root; running as uid " + std::to_string(geteuid()));
    }
    return {};  // children keep our (unprivileged) user
  }
  const passwd* pw = nullptr;
  if (!name.empty()) {
    pw = getpwnam(name.c_str());
    if (pw == nullptr) return fail("--user " + name + ": no such user");
  } else {
    pw = getpwnam("cloudtaser");
    if (pw == nullptr) pw = getpwnam("nobody");
    if (pw == nullptr)
      return fail("running as root and neither user cloudtaser nor nobody exists (use --user)");
  }
  if (pw->pw_uid == 0 || pw->pw_gid == 0)
    return fail("--user " + std::string(pw->pw_name) + " is root; children must not run as root");
  s->drop_user = true;
  s->uid = pw->pw_uid;
  s->gid = pw->pw_gid;
  return {};
}

int parse_common_flags(const Flags& f, const char* daemon, const char* summary,
                       std::initializer_list<const char*> required, const std::string& pin_flag,
                       CommonFlags* out) {
  if (f.has("help")) {
    std::fputs(f.usage(daemon, summary).c_str(), stdout);
    return 0;
  }
  if (f.has("version")) {
    std::printf("%s %s\n", daemon, CT_VERSION);
    return 0;
  }
  for (const char* req : required)
    if (!f.has(req)) return usage_error(daemon, std::string("missing required flag --") + req);
  log::Level level = log::kInfo;
  if (f.has("log-level") && !log::parse_level(f.get("log-level"), &level))
    return usage_error(daemon,
                       "bad --log-level '" + f.get("log-level") + "' (error, warn, info, debug)");
  log::init(daemon, "parent", level);
  out->settings.log_level = static_cast<uint8_t>(level);
  if (f.has("drain-timeout")) {
    auto s = parse_seconds(f.get("drain-timeout"), 3600);
    if (!s) return usage_error(daemon, "bad --drain-timeout (whole seconds, 1 to 3600)");
    out->settings.drain_timeout_ms = *s * 1000;
  }
  if (auto user = resolve_run_user(f.get("user"), &out->settings); !user)
    return usage_error(daemon, user.what());
  out->pin_flag = pin_flag;
  out->insecure_no_pin = f.has("insecure-no-pin");
  out->pin_file = f.get(pin_flag + "-file");
  for (const std::string& p : f.all(pin_flag)) {
    auto pin = parse_pin(p);
    if (!pin)
      return usage_error(
          daemon, "bad --" + pin_flag + " '" + p + "' (expected sha256//<base64 of 32 bytes>)");
    out->pins.push_back(*pin);
  }
  if (f.has("memory-budget")) {
    auto m = parse_seconds(f.get("memory-budget"), limits::kMaxMemoryBudgetMiB);
    if (!m) return usage_error(daemon, "bad --memory-budget (whole MiB, 1 to 65536)");
    out->settings.memory_budget_mib = *m;
  }
  return -1;
}

Result<void> choose_pin_source(const std::string& cert_path, const char* default_name,
                               CommonFlags* f) {
  const bool given = !f->pins.empty() || !f->pin_file.empty();
  if (f->insecure_no_pin) {
    if (given)
      return fail("--insecure-no-pin contradicts --" + f->pin_flag + "/--" + f->pin_flag +
                  "-file: drop one");
    return {};
  }
  if (given) return {};
  const size_t slash = cert_path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : cert_path.substr(0, slash);
  const std::string path = dir + "/" + default_name;
  if (access(path.c_str(), F_OK) == 0) {
    f->pin_file = path;
    return {};
  }
  const std::string peer = f->peer();
  return fail("no " + peer + " pin: give --" + f->pin_flag + " or --" + f->pin_flag +
              "-file, or put " + path +
              " (one sha256// pin per line, as cloudtaser-certs writes it); --insecure-no-pin " +
              "accepts any " + peer + " certificate the CA signed");
}

}  // namespace ct
