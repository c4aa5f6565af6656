// The parent's view of its two children (TLS process and forwarding
// process): spawning by exec (the TLS process runs the daemon's own file, the
// forwarding process <daemon>-forward, which links no OpenSSL), the control
// channels, the data channel that joins the two, and restart with backoff
// when one dies. A restarted child gets a fresh data channel and its
// surviving sibling the other end of it, so the survivor keeps its own state
// (the broker's bridge links, say).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "shared/ipc/channel.h"
#include "shared/os/loop.h"
#include "shared/proc/process_spec.h"

namespace ct {

class Supervisor {
 public:
  enum Which { kTls = 0, kForward = 1 };
  // Also the child's --child= name, which the child matches (daemon_exe_main).
  static const char* name(Which w) {
    return role_name(w == kTls ? ProcRole::kTls : ProcRole::kForward);
  }

  struct Hooks {
    virtual ~Hooks() = default;
    // A child was just spawned: send it its settings (and material, listener).
    virtual void on_child_started(Which w, IpcChannel& ch) noexcept = 0;
    // Any message the child sent; the hook enforces what is allowed when.
    virtual void on_child_message(Which w, IpcMessage& m) noexcept = 0;
    // `status` as waitpid() gives it. A child that exited kExitVersionMismatch
    // is not restarted (the same file would refuse again).
    virtual void on_child_exited(Which w, int status) noexcept = 0;
    // The child stopped answering the heartbeat for kHeartbeatGrace (false),
    // or answered again (true). At kHeartbeatTimeout it is killed.
    virtual void on_child_answering(Which w, bool answering) noexcept { (void)w, (void)answering; }
    // Each answer to the heartbeat: the log lines the child has dropped so
    // far (a restarted child starts again from 0).
    virtual void on_child_log_dropped(Which w, uint64_t lines) noexcept { (void)w, (void)lines; }
  };

  // `tls_exe` and `fwd_exe`: the files each child execs, opened once at start
  // (open_self_exe, open_forward_exe). The tables are viewed, not copied: they
  // must outlive the supervisor (a daemon's are constexpr, in its procs.h).
  Supervisor(Loop& loop, Hooks& hooks, std::string daemon, UniqueFd tls_exe, UniqueFd fwd_exe,
             std::span<const MsgRule> tls_accepts, std::span<const MsgRule> fwd_accepts);

  // Spawns both children joined by a data channel. False if fork fails.
  // Every time the supervisor keeps (heartbeat, backoff) is on the clock
  // the caller passes here and to on_sigchld() and tick().
  bool start(TimePoint now);
  // SIGCHLD: reaps and schedules restarts (unless stopping).
  void on_sigchld(TimePoint now) noexcept;
  void tick(TimePoint now) noexcept;
  // After each loop batch: a channel whose send failed (queue over its cap, a
  // fatal socket error such as EMSGSIZE) counts as its child's death (killed
  // and restarted); one with queued output waits for EPOLLOUT.
  void after_batch() noexcept;
  TimePoint next_deadline() const;
  IpcChannel* channel(Which w);
  pid_t pid(Which w) const { return kids_[w].pid; }
  bool alive(Which w) const { return kids_[w].pid > 0; }
  bool any_alive() const { return alive(kTls) || alive(kForward); }
  // A child broke the control protocol: it is killed (and restarted).
  void kill_child(Which w, const std::string& why) noexcept;
  void signal_all(int sig) noexcept;
  // No more restarts (shutdown).
  void set_stopping() { stopping_ = true; }
  uint64_t restarts() const { return restarts_; }

 private:
  struct Kid : Loop::Handler {
    Supervisor* sup = nullptr;
    Which which = kTls;
    pid_t pid = -1;
    IpcChannel ch;
    bool registered = false;
    bool want_out = false;  // EPOLLOUT armed
    unsigned failures = 0;
    TimePoint started{};
    TimePoint restart_at = TimePoint::max();
    // Heartbeat: the next PING, and the one outstanding (max: none).
    TimePoint next_ping = TimePoint::max();
    TimePoint ping_sent = TimePoint::max();
    uint64_t ping_seq = 0;
    bool late = false;  // on_child_answering(false) was called
    void on_io(uint32_t events) noexcept override;
  };
  void heartbeat(Kid& k, TimePoint now) noexcept;
  void on_pong(Kid& k, const IpcMessage& m) noexcept;
  bool spawn(Which w, TimePoint now);
  void connect_pair();
  void drop_channel(Kid& k);

  Loop& loop_;
  Hooks& hooks_;
  std::string daemon_;
  std::array<UniqueFd, 2> exe_;
  std::array<std::span<const MsgRule>, 2> accepts_;  // the daemon's process table
  std::array<Kid, 2> kids_;
  bool stopping_ = false;
  uint64_t restarts_ = 0;
  TimePoint last_tick_{};
};

}  // namespace ct
