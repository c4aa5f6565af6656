#include "shared/parent/daemon_parent.h"

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "shared/base/log.h"
#include "shared/parent/host.h"
#include "shared/proc/spawn.h"

namespace ct {

namespace {
constexpr auto kStartupTimeout = std::chrono::seconds(10);
// How often the material files are looked at (a stat each).
constexpr auto kWatchPeriod = std::chrono::seconds(2);

}  // namespace

Result<void> DaemonParent::open_executables() {
  Result<UniqueFd> self = open_self_exe();
  if (!self) return self.status();
  Result<ForwardExeFile> fwd = open_forward_exe(daemon_);
  if (!fwd) return fwd.status();
  tls_exe_ = std::move(*self);
  fwd_exe_ = std::move(fwd->fd);
  fwd_exe_path_ = std::move(fwd->path);
  return {};
}

int DaemonParent::run(const CommonFlags& flags, MaterialStore& store) {
  if (!store.loaded()) {
    if (auto r = store.load(); !r) return usage_error(daemon_, r.what());
  }
  if (!fwd_exe_) {
    if (auto r = open_executables(); !r) return usage_error(daemon_, r.what());
  }
  store_ = &store;
  settings_ = flags.settings;
  if (flags.insecure_no_pin)
    LOG_WARN("--insecure-no-pin: any %s certificate the CA signed is accepted; pin the %s's key",
             flags.peer().c_str(), flags.peer().c_str());
  // The parent holds every private key for the daemon's life: no core dump,
  // and no ptrace or /proc/<pid>/mem by processes of the same user.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    std::fprintf(stderr, "%s: prctl(PR_SET_DUMPABLE, 0): %s\n", daemon_, std::strerror(errno));
    return 1;
  }
  uint64_t fds_from = 0, fds_to = 0;
  if (const auto raised = raise_fd_limit(&fds_from, &fds_to); !raised)
    LOG_WARN("cannot raise the file descriptor limit (%s): streams may fail beyond %llu fds",
             raised.what().c_str(), static_cast<unsigned long long>(fds_from));
  else if (fds_to != fds_from)
    LOG_INFO("file descriptor limit raised from %llu to %llu",
             static_cast<unsigned long long>(fds_from), static_cast<unsigned long long>(fds_to));
  signal(SIGPIPE, SIG_IGN);
  loop_.watch_signals({SIGCHLD, SIGTERM, SIGINT, SIGHUP}, [this](int sig) {
    if (sig == SIGCHLD)
      sup_->on_sigchld(Clock::now());
    else if (sig == SIGHUP)
      reload();
    else
      begin_drain();
  });
  Supervisor::Hooks& hooks = *this;  // a private base: converted here, where it is accessible
  sup_ =
      std::make_unique<Supervisor>(loop_, hooks, daemon_, std::move(tls_exe_), std::move(fwd_exe_),
                                   procs_.parent.from_tls, procs_.parent.from_forward);
  const auto started = Clock::now();
  drain_.start(started, kStartupTimeout);
  watcher_ = std::make_unique<FileWatcher>(store.files().paths(), kWatchPeriod);
  watcher_->start(started);
  if (!sup_->start(started)) {
    sup_->signal_all(SIGKILL);
    return usage_error(daemon_, "cannot start child processes");
  }
  // The deadline work (heartbeats, restarts, the daemon's own, the file
  // watch) runs from a timer re-armed after every batch, not on every wake-up.
  TimePoint daemon_due = started;  // unknown until the daemon's first tick
  Timer deadlines(loop_.timers(), [&](TimePoint now) {
    sup_->tick(now);
    daemon_due = hooks_.tick(now);
    if (drain_.running() && watcher_->changed(now)) {
      // reload() records the new stamp once it applies (or refuses) the
      // files; a reload deferred while the TLS process restarts leaves it, so
      // it is retried.
      if (!reload_deferred_) LOG_INFO("certificate, key, CA or pin file changed: reloading");
      reload();
    }
  });
  while (true) {
    const auto now = Clock::now();
    if (drain_.startup_expired(now)) {
      fatal_error_ = "TLS process did not become ready in time";
      break;
    }
    if (drain_.over(now, sup_->any_alive())) break;
    if (!fatal_error_.empty()) break;
    // Whatever this iteration (and the last batch) sent: failed channels end
    // their child, queued output arms EPOLLOUT.
    sup_->after_batch();
    deadlines.arm(std::min({sup_->next_deadline(), daemon_due,
                            drain_.running() ? watcher_->deadline() : TimePoint::max()}));
    loop_.run_once(drain_.deadline());
  }
  sup_->set_stopping();
  sup_->signal_all(SIGKILL);
  // The material is wiped by its store; a failed reload's candidate now.
  store.refuse();
  if (!fatal_error_.empty()) {
    std::fprintf(stderr, "%s: %s\n", daemon_, fatal_error_.c_str());
    return kExitUsage;
  }
  LOG_INFO("exiting");
  return 0;
}

void DaemonParent::on_child_started(Supervisor::Which w, IpcChannel& ch) noexcept {
  const auto s = encode_settings(settings_);
  ch.send(Msg::kSettings, s);
  if (w == Supervisor::kTls) {
    // A new process only ever sees the good material: a candidate meant for
    // its predecessor is dropped (the watcher or a SIGHUP proposes it again).
    store_->refuse();
    send_material(ch, store_->good());
  }
  hooks_.send_extras(w, ch);
  // A restarted forwarding process serves the latest figures at once.
  if (w == Supervisor::kForward && !last_stats_.empty()) ch.send(Msg::kStats, last_stats_);
  if (drain_.draining()) ch.send(Msg::kDrain, Bytes{});
}

void DaemonParent::on_ready(Supervisor::Which w) noexcept {
  if (w != Supervisor::kTls) return;
  if (store_->accept()) {
    LOG_INFO("reload: new certificate material in service");
    return;
  }
  tls_ready_ = true;
  if (drain_.ready()) {
    LOG_INFO("ready");
    sd_notify("READY=1\nSTATUS=started; no link yet");
  } else if (reload_deferred_) {
    LOG_INFO("TLS process ready again: applying the deferred reload");
    reload();
  }
}

void DaemonParent::on_material_error(Supervisor::Which w, const std::string& why) noexcept {
  if (drain_.phase() == Drain::Phase::kStarting) {
    fatal_error_ = why;
    return;
  }
  if (store_->pending()) {
    LOG_WARN("reload refused, keeping the material in service: %s", why.c_str());
    store_->refuse();
    return;
  }
  // The good material was refused by a restarted TLS process: impossible.
  sup_->kill_child(w, "refused material it accepted before: " + why);
}

void DaemonParent::on_child_message(Supervisor::Which w, IpcMessage& m) noexcept {
  switch (m.type) {
    case Msg::kReady:
      return on_ready(w);
    case Msg::kMaterialError:
      return on_material_error(w, std::string(m.body.begin(), m.body.end()));
    case Msg::kStatus: {
      auto s = decode_status(m.body);
      if (!s) return sup_->kill_child(w, "malformed STATUS (or a control character in its text)");
      LOG_INFO("status: %s", s->text.c_str());
      sd_notify("STATUS=" + s->text);
      return hooks_.on_status(*s);
    }
    case Msg::kStats:
      // Checked here, then handed to the forwarding process, which serves them.
      if (w != Supervisor::kTls || !stats_.check || !stats_.check(m.body))
        return sup_->kill_child(w, "malformed STATS");
      last_stats_ = m.body;
      if (IpcChannel* ch = sup_->channel(Supervisor::kForward)) ch->send(Msg::kStats, m.body);
      return;
    default:
      if (!hooks_.on_extra_message(w, m))
        sup_->kill_child(w, std::string("message not allowed: ") + msg_name(m.type));
  }
}

void DaemonParent::send_material(IpcChannel& ch, const Material& m) noexcept {
  std::vector<uint8_t> enc = encode_material(m);
  ch.send(Msg::kMaterial, enc);  // copied into the queue, which wipes it once sent
  explicit_bzero(enc.data(), enc.size());
}

void DaemonParent::tls_out_of_service() noexcept {
  if (last_stats_.empty() || !stats_.without_tls) return;  // no figures: nothing to correct
  std::vector<uint8_t> corrected = stats_.without_tls(last_stats_);
  if (corrected.empty()) return;
  last_stats_ = std::move(corrected);
  if (IpcChannel* ch = sup_->channel(Supervisor::kForward)) ch->send(Msg::kStats, last_stats_);
}

void DaemonParent::on_child_answering(Supervisor::Which w, bool answering) noexcept {
  if (w == Supervisor::kTls && !answering) tls_out_of_service();
  // Answering again: its next STATS (every second) brings the real figures.
}

void DaemonParent::on_child_exited(Supervisor::Which w, int status) noexcept {
  hooks_.on_child_exited(w);
  if (w == Supervisor::kTls) {
    store_->refuse();  // nobody is left to judge the candidate
    tls_ready_ = false;
    tls_out_of_service();
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == kExitVersionMismatch && fatal_error_.empty()) {
    // Its own line says which versions; this one says which file to replace.
    fatal_error_ = std::string("the ") + Supervisor::name(w) + " process refused to run: " +
                   (w == Supervisor::kForward ? fwd_exe_path_ : std::string("/proc/self/exe")) +
                   " is not from " + daemon_ + " " + CT_VERSION +
                   " (install the daemon and its helper from one package)";
    return;
  }
  if (drain_.phase() == Drain::Phase::kStarting && w == Supervisor::kTls && fatal_error_.empty())
    fatal_error_ = "TLS process exited during start-up";
}

void DaemonParent::reload() noexcept {
  if (!drain_.running()) return;
  const std::string stamp = watcher_->stamp();
  IpcChannel* ch = sup_->channel(Supervisor::kTls);
  if (ch == nullptr || !tls_ready_) {
    // Kept, not lost: applied when the restarted TLS process is ready. The
    // stamp stays old so that the watcher also tries again.
    if (!reload_deferred_) LOG_WARN("reload deferred: TLS process is restarting");
    reload_deferred_ = true;
    return;
  }
  reload_deferred_ = false;
  watcher_->record(stamp);  // what this reload reads; the watcher fires on the next change
  if (auto r = store_->propose(); !r) {
    LOG_WARN("reload refused, keeping the material in service: %s", r.what().c_str());
    return;
  }
  send_material(*ch, store_->candidate());
  LOG_INFO("reload: material sent to the TLS process");
}

void DaemonParent::begin_drain() noexcept {
  const auto r = drain_.begin(Clock::now(), std::chrono::milliseconds(settings_.drain_timeout_ms));
  if (r != Drain::Begin::kDraining) return;
  sd_notify("STOPPING=1");
  LOG_INFO("draining: no new streams, up to %u s for the open ones",
           settings_.drain_timeout_ms / 1000);
  sup_->set_stopping();
  hooks_.on_drain();
  // The forwarding process first: the broker's readiness turns false before the
  // TLS process sends GOAWAY to the bridges.
  for (auto w : {Supervisor::kForward, Supervisor::kTls})
    if (IpcChannel* ch = sup_->channel(w)) ch->send(Msg::kDrain, Bytes{});
}

}  // namespace ct
