// The privileged parent of either daemon, wired from parts the daemon
// composes: its CommonFlags (settings for the children, pins), a
// MaterialStore (the reload transaction), a FileWatcher on the material files
// and the Drain (phases and their deadlines). It supervises the two children
// and turns signals into phases: SIGHUP reloads the material, SIGTERM/SIGINT
// drain and exit. It never parses anything that came from the network.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "shared/ipc/msgs.h"
#include "shared/os/loop.h"
#include "shared/parent/common_flags.h"
#include "shared/parent/drain.h"
#include "shared/parent/file_watcher.h"
#include "shared/parent/material_store.h"
#include "shared/parent/supervisor.h"
#include "shared/proc/process_spec.h"

namespace ct {

class DaemonParent final : Supervisor::Hooks {
 public:
  // What a daemon adds to the common parent. Every hook has a default that
  // does nothing, so a daemon overrides only what it has.
  struct Hooks {
    virtual ~Hooks() = default;
    // A child was started and has its settings (and, the TLS process, its
    // material): anything else it needs at start (the broker's listeners).
    virtual void send_extras(Supervisor::Which w, IpcChannel& ch) noexcept { (void)w, (void)ch; }
    // Daemon-specific messages (the bridge's dial requests). False: not allowed.
    virtual bool on_extra_message(Supervisor::Which w, IpcMessage& m) noexcept {
      (void)w, (void)m;
      return false;
    }
    // A STATUS from the TLS process, after the parent logged it and told systemd.
    virtual void on_status(const Status& s) noexcept { (void)s; }
    // Draining: close what the daemon holds that lets new work in (the
    // broker's listeners), so the kernel stops completing handshakes for us.
    virtual void on_drain() noexcept {}
    // A child is gone (before the parent's own bookkeeping): drop what was
    // only for it (the bridge's dial in flight for its TLS process).
    virtual void on_child_exited(Supervisor::Which w) noexcept { (void)w; }
    // Each heartbeat answer: the log lines the child dropped so far.
    virtual void on_child_log_dropped(Supervisor::Which w, uint64_t lines) noexcept {
      (void)w, (void)lines;
    }
    // The daemon's own deadline work (the bridge's dial); returns when it is
    // next due.
    virtual TimePoint tick(TimePoint now) noexcept {
      (void)now;
      return TimePoint::max();
    }
  };

  // STATS from the TLS process (the broker's figures, which its forwarding
  // process serves): whether a body is well formed, and the figures to serve
  // while no TLS process answers (empty: leave them). A daemon without
  // `check` has no figures, and a STATS from its TLS process ends it.
  struct StatsRelay {
    std::function<bool(Bytes)> check;
    std::function<std::vector<uint8_t>(Bytes)> without_tls;
  };

  // `procs`: the daemon's process table (what the parent accepts from each child).
  DaemonParent(const DaemonProcs& procs, Hooks& hooks, StatsRelay stats = {})
      : daemon_(procs.daemon), procs_(procs), hooks_(hooks), stats_(std::move(stats)) {}
  ~DaemonParent() override = default;

  // Opens the two files the children exec, once: our own (TLS process) and
  // <daemon>-forward (forwarding process; open_forward_exe). Call it with
  // the first MaterialStore::load, before anything is bound, so that a
  // missing file is the only line printed.
  Result<void> open_executables();
  // Starts the children and runs until drained (loading `store` first if
  // the daemon did not). The children get `flags.settings`.
  int run(const CommonFlags& flags, MaterialStore& store);

  Loop& loop() { return loop_; }
  // The child's control channel while it runs (nullptr otherwise).
  IpcChannel* channel(Supervisor::Which w) { return sup_ ? sup_->channel(w) : nullptr; }

 private:
  void on_child_started(Supervisor::Which w, IpcChannel& ch) noexcept override;
  void on_child_message(Supervisor::Which w, IpcMessage& m) noexcept override;
  void on_child_exited(Supervisor::Which w, int status) noexcept override;
  void on_child_answering(Supervisor::Which w, bool answering) noexcept override;
  void on_child_log_dropped(Supervisor::Which w, uint64_t lines) noexcept override {
    hooks_.on_child_log_dropped(w, lines);
  }

  void on_ready(Supervisor::Which w) noexcept;
  void on_material_error(Supervisor::Which w, const std::string& why) noexcept;
  void reload() noexcept;
  // The broker's forwarding process serves /readyz from the TLS process's
  // figures; while that process is stuck or restarting, it gets them with no
  // bridge connected (the last ones would say "ready" forever).
  void tls_out_of_service() noexcept;
  // Encodes and queues the material; the encoded copy is wiped at once.
  void send_material(IpcChannel& ch, const Material& m) noexcept;
  void begin_drain() noexcept;

  const char* daemon_;
  const DaemonProcs& procs_;
  Hooks& hooks_;
  StatsRelay stats_;
  Loop loop_;
  std::unique_ptr<Supervisor> sup_;
  UniqueFd tls_exe_, fwd_exe_;
  std::string fwd_exe_path_;
  // Set by run(), for its duration.
  MaterialStore* store_ = nullptr;
  ProcSettings settings_;
  std::unique_ptr<FileWatcher> watcher_;
  Drain drain_;
  bool tls_ready_ = false;        // the current TLS process said READY
  bool reload_deferred_ = false;  // a reload waits for the TLS process
  // Ends the parent with this line and kExitUsage: a start-up failure, or a
  // child that refused to run (another version's executable).
  std::string fatal_error_;
  std::vector<uint8_t> last_stats_;
};

}  // namespace ct
