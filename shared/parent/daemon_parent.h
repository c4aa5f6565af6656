// The privileged parent of either daemon: it reads the certificate files,
// keeps the last material that a TLS process accepted (so a restarted TLS
// process gets exactly that), supervises the two children, and turns signals
// into phases: SIGHUP reloads the material, SIGTERM/SIGINT drain and exit.
// It never parses anything that came from the network.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "shared/ipc/msgs.h"
#include "shared/os/flags.h"
#include "shared/os/loop.h"
#include "shared/parent/supervisor.h"
#include "shared/proc/process_spec.h"

namespace ct {

// Exit codes: 0 clean, 1 runtime failure, 2 bad command line or files.
inline constexpr int kExitUsage = 2;

class DaemonParent : public Supervisor::Hooks {
 public:
  // `procs`: the daemon's process table (what the parent accepts from each child).
  explicit DaemonParent(const DaemonProcs& procs) : daemon_(procs.daemon), procs_(procs) {}
  ~DaemonParent() override = default;
  // Loads the material, starts the children and runs until drained.
  int run();

 protected:
  // Settings for a child, and anything else it needs at start (listeners).
  virtual ProcSettings settings_for(Supervisor::Which w) = 0;
  virtual void send_extras(Supervisor::Which w, IpcChannel& ch) noexcept { (void)w, (void)ch; }
  // Daemon-specific messages (the bridge's dial requests). False: not allowed.
  virtual bool on_extra_message(Supervisor::Which w, IpcMessage& m) noexcept {
    (void)w, (void)m;
    return false;
  }
  virtual void on_status(const Status& s) noexcept;
  // Checks material the way the TLS process will (key matches certificate,
  // CA parses), so that a bad file is reported before anything starts.
  virtual bool validate_material(const Material& m, std::string* err) const = 0;
  // Draining: close what the parent holds that lets new work in (the
  // broker's listeners), so the kernel stops completing handshakes for us.
  virtual void on_drain() noexcept {}
  // STATS from the TLS process (the broker's figures, which its forwarding
  // process serves): whether a body is well formed, and the figures to serve
  // while no TLS process answers (empty: leave them). A daemon without
  // figures keeps the defaults, and a STATS from its TLS process ends it.
  virtual bool check_stats(Bytes body) const {
    (void)body;
    return false;
  }
  virtual std::vector<uint8_t> stats_without_tls(Bytes last) const {
    (void)last;
    return {};
  }
  virtual TimePoint extra_deadline() const { return TimePoint::max(); }
  virtual void extra_tick(TimePoint now) noexcept { (void)now; }
  // The flags both daemons share: --help, --version, the required ones,
  // --log-level, --drain-timeout, --user, --<pin_flag> and --<pin_flag>-file.
  // Returns -1 to go on, or the exit code main() returns.
  int parse_common_flags(const Flags& f, const char* summary,
                         std::initializer_list<const char*> required, const std::string& pin_flag);
  // Prints "<daemon>: <msg>" and returns kExitUsage (for main()).
  int usage_error(const std::string& msg) const;
  // Identity fails closed: without --<pin_flag> or --<pin_flag>-file the pin
  // file `default_name` beside `cert_path` is used (cloudtaser-certs writes
  // it), and without that either the daemon refuses to start unless
  // --insecure-no-pin says it may accept any certificate the CA signed.
  bool choose_pin_source(const std::string& cert_path, const char* default_name, std::string* err);

  // When running as root, the children switch to `name` (default: the
  // dedicated "cloudtaser" user if it exists, else "nobody"). As any other user
  // they stay that user (systemd's User=vault, a pod's runAsUser).
  bool resolve_run_user(const std::string& name, std::string* err);

  // Reads cert, key and CA files; *err names the file on failure.
  bool read_material(Material* m, std::string* err) const;
  // Reads the files into the material that the first TLS process gets. Called
  // before anything else is set up so a bad file is the only line printed.
  bool preload_material(std::string* err);
  // Opens the two files the children exec, once: our own (TLS process) and
  // <daemon>-forward (forwarding process; open_forward_exe). Called with
  // preload_material, before anything is bound, for the same reason.
  bool open_executables(std::string* err);

  void on_child_started(Supervisor::Which w, IpcChannel& ch) noexcept override;
  void on_child_message(Supervisor::Which w, IpcMessage& m) noexcept override;
  void on_child_exited(Supervisor::Which w, int status) noexcept override;
  void on_child_answering(Supervisor::Which w, bool answering) noexcept override;

  const char* daemon_;
  const DaemonProcs& procs_;
  std::string cert_path_, key_path_, ca_path_;
  std::string service_cert_path_, service_key_path_;  // bridge, optional
  std::string pin_file_path_;  // optional: one sha256// pin per line, '#' comments
  std::vector<Pin> pins_;
  std::string pin_flag_;          // "bridge-pin" or "broker-pin"
  bool insecure_no_pin_ = false;  // --insecure-no-pin: chain verification only
  ProcSettings base_;             // log level, timeouts
  Loop loop_;
  std::unique_ptr<Supervisor> sup_;
  UniqueFd tls_exe_, fwd_exe_;
  std::string fwd_exe_path_;

 private:
  enum class Phase { kStarting, kRunning, kDraining };
  void reload() noexcept;
  // The broker's forwarding process serves /readyz from the TLS process's
  // figures; while that process is stuck or restarting, it gets them with no
  // bridge connected (the last ones would say "ready" forever).
  void tls_out_of_service() noexcept;
  // Encodes and queues the material; the encoded copy is wiped at once.
  void send_material(IpcChannel& ch, const Material& m) noexcept;
  void begin_drain() noexcept;
  // The material files' identity (device, inode, size, mtime): a change of
  // any (a rewrite, a Kubernetes secret's symlink swap) triggers a reload.
  std::string files_stamp() const;
  void watch_files(TimePoint now) noexcept;
  std::string last_stamp_;
  TimePoint next_watch_ = TimePoint::max();
  Phase phase_ = Phase::kStarting;
  Material good_;  // the material the TLS process runs with
  bool loaded_ = false;
  Material candidate_;  // sent on SIGHUP, awaiting the verdict
  bool candidate_pending_ = false;
  bool tls_ready_ = false;        // the current TLS process said READY
  bool reload_deferred_ = false;  // a reload waits for the TLS process
  bool material_sent_to_current_tls_ = false;
  int exit_code_ = 0;
  // Ends the parent with this line and kExitUsage: a start-up failure, or a
  // child that refused to run (another version's executable).
  std::string fatal_error_;
  std::vector<uint8_t> last_stats_;
  TimePoint startup_deadline_{};
  TimePoint drain_deadline_ = TimePoint::max();
};

}  // namespace ct
