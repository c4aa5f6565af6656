// The flags both daemons share (--help, --version, --log-level,
// --drain-timeout, --memory-budget, --user and the peer pins), parsed into a
// struct the daemon keeps, and the pin source chosen from them.
#pragma once

#include <initializer_list>
#include <string>
#include <vector>

#include "shared/base/pin.h"
#include "shared/base/result.h"
#include "shared/ipc/msgs.h"
#include "shared/os/flags.h"

namespace ct {

// Exit codes: 0 clean, 1 runtime failure, 2 bad command line or files.
inline constexpr int kExitUsage = 2;

// Prints "<daemon>: <msg>" and returns kExitUsage (for main()).
int usage_error(const char* daemon, const std::string& msg);

// How the help text names this daemon's certificate files and its peer.
struct IdentityWording {
  const char* cert_flag;     // "cert": the flags are --cert and --key
  const char* key_flag;      // "key"
  const char* presented_to;  // "bridges": "PEM certificate chain presented to bridges"
  const char* peer_certs;    // "bridge certificates": "... that bridge certificates must chain to"
  const char* peer;          // "bridge": the flags are --bridge-pin and --bridge-pin-file
  const char* peers_whose;   // "bridges": "accept only bridges whose certificate key ..."
  const char* self;          // "broker": "without it the broker refuses to start"
};
// --<cert>, --<key>, --ca-cert, --<peer>-pin-file, --<peer>-pin and
// --insecure-no-pin, in that order.
std::vector<FlagSpec> identity_flag_specs(const IdentityWording& w);
// --user, --log-level, --version and --help: the last flags of both daemons.
std::vector<FlagSpec> last_flag_specs();
// The parts in order, as one list (--help prints them in this order).
std::vector<FlagSpec> join_flag_specs(std::initializer_list<std::vector<FlagSpec>> parts);

struct CommonFlags {
  std::string pin_flag;  // "bridge-pin" or "broker-pin"
  std::vector<Pin> pins;
  std::string pin_file;          // --<pin_flag>-file, or the default choose_pin_source found
  bool insecure_no_pin = false;  // chain verification only
  // What every child gets: the common flags fill the log level, drain
  // timeout, memory budget and user; the daemon adds its own.
  ProcSettings settings;

  // "bridge" for "bridge-pin".
  std::string peer() const { return pin_flag.substr(0, pin_flag.find('-')); }
};

// Parses the common flags into *out (and starts logging at the level asked).
// --help and --version print and return 0; a bad or missing flag prints one
// line and returns kExitUsage; -1: go on.
int parse_common_flags(const Flags& f, const char* daemon, const char* summary,
                       std::initializer_list<const char*> required, const std::string& pin_flag,
                       CommonFlags* out);

// When running as root, the children switch to `name` (default: the
// dedicated "cloudtaser" user if it exists, else "nobody"). As any other user
// they stay that user (systemd's User=vault, a pod's runAsUser).
Result<void> resolve_run_user(const std::string& name, ProcSettings* s);

// Identity fails closed: without --<pin_flag> or --<pin_flag>-file the pin
// file `default_name` beside `cert_path` is used (cloudtaser-certs writes
// it), and without that either the daemon refuses to start unless
// --insecure-no-pin says it may accept any certificate the CA signed.
Result<void> choose_pin_source(const std::string& cert_path, const char* default_name,
                               CommonFlags* f);

}  // namespace ct
