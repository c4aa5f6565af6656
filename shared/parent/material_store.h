// The certificate material the parent hands to its TLS process, and the
// reload as a transaction: the good material (what the TLS process runs with)
// changes only when the TLS process accepts a candidate read from the files;
// a refused candidate is wiped and the good material stays. A restarted TLS
// process is given exactly the good material, never a candidate.
#pragma once

#include <sys/stat.h>

#include <functional>
#include <string>
#include <vector>

#include "shared/base/pin.h"
#include "shared/base/result.h"
#include "shared/ipc/msgs.h"

namespace ct {

// Where the material comes from. An empty path is not read (the CA is optional
// only for the beacon).
struct MaterialFiles {
  std::string cert, key, ca;
  std::string service_cert, service_key;  // the bridge's, optional
  std::string pin_file;                   // one sha256// pin per line, '#' comments
  std::vector<Pin> pins;                  // given on the command line
  std::string pin_flag;                   // "bridge-pin": named in the errors about pins
  // Optional files a newer flag added (default-initialised, so a list that
  // ends before them stays valid).
  std::string upstream_ca = {};       // the bridge's --vault-ca
  std::string beacon_ca = {};         // beacon mode only: --beacon-ca
  std::vector<Pin> beacon_pins = {};  // and --beacon-pin
  std::string beacon_cert = {};       // and --beacon-cert, --beacon-key (optional)
  std::string beacon_key = {};
  // The paths given, in a fixed order (what a FileWatcher watches).
  std::vector<std::string> paths() const;
};

// The cap on each PEM or pin file: far above any real chain, far below what
// would strain the parent.
inline constexpr size_t kMaxPemFile = 64 * 1024;

// Reads a file of at most `cap` bytes. With `private_key`, the file opened
// must also pass check_key_file. On failure the error is one line naming `path`.
Result<void> read_small_file(const std::string& path, size_t cap, std::string* out,
                             bool private_key = false);
// A private key file must belong to root or to us, give others no access,
// and be readable by its group only when that is a group we run in.
// `st` is the fstat of the opened file; the error names `path`.
Result<void> check_key_file(const std::string& path, const struct stat& st);

class MaterialStore {
 public:
  // Checks material the way the TLS process will (the key matches the
  // certificate, the CA parses), so that a bad file is named by the parent
  // before anything starts and a bad reload is never sent. The error: one line.
  using Validate = std::function<Result<void>(const Material&)>;

  MaterialStore(MaterialFiles files, Validate validate);
  ~MaterialStore();
  MaterialStore(const MaterialStore&) = delete;
  MaterialStore& operator=(const MaterialStore&) = delete;

  // Reads the files (pins parsed, sizes capped) without validating them.
  // On failure *m is wiped and the error names the file.
  Result<void> read(Material* m) const;
  // Start-up: reads and validates the files into the good material.
  Result<void> load();
  bool loaded() const { return loaded_; }
  // Reads and validates the files into the candidate, which replaces (and
  // wipes) one still pending: the TLS process's next verdict is on the
  // newest files. On failure nothing changes and the error says why.
  Result<void> propose();
  // The TLS process accepted the candidate: it becomes the good material
  // (the old one wiped). False, and nothing changes, with none pending.
  bool accept();
  // The candidate is not in service (refused, or the TLS process that was to
  // judge it is gone): wiped; the good material is unchanged.
  void refuse();
  bool pending() const { return pending_; }
  const Material& good() const { return good_; }
  const Material& candidate() const { return candidate_; }
  const MaterialFiles& files() const { return files_; }

 private:
  Result<void> read_pin_file(Material* m) const;
  // read() without the wipe on failure, which read() does once for every exit.
  Result<void> read_unwiped(Material* m) const;
  // read() and the check; only on success is *into replaced (and the old
  // contents wiped).
  Result<void> read_checked(Material* into) const;

  MaterialFiles files_;
  Validate validate_;
  Material good_;
  bool loaded_ = false;
  Material candidate_;
  bool pending_ = false;
};

}  // namespace ct
