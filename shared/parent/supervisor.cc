#include "shared/parent/supervisor.h"

#include <signal.h>
#include <sys/eventfd.h>
#include <sys/wait.h>

#include <cstring>

#include "shared/base/bytes.h"
#include "shared/base/log.h"
#include "shared/ipc/shm_ring.h"
#include "shared/proc/spawn.h"
#include "shared/wire/limits.h"

namespace ct {

namespace {
// Restart backoff: 100 ms doubling to 10 s; a child that ran for a minute
// starts over at 100 ms.
constexpr auto kRestartBase = std::chrono::milliseconds(100);
constexpr auto kRestartCap = std::chrono::seconds(10);
constexpr auto kStableRun = std::chrono::seconds(60);
}  // namespace

Supervisor::Supervisor(Loop& loop, Hooks& hooks, std::string daemon, UniqueFd tls_exe,
                       UniqueFd fwd_exe, std::span<const MsgRule> tls_accepts,
                       std::span<const MsgRule> fwd_accepts)
    : loop_(loop), hooks_(hooks), daemon_(std::move(daemon)) {
  exe_[kTls] = std::move(tls_exe);
  exe_[kForward] = std::move(fwd_exe);
  accepts_[kTls] = tls_accepts;
  accepts_[kForward] = fwd_accepts;
  for (int i = 0; i < 2; i++) {
    kids_[static_cast<size_t>(i)].sup = this;
    kids_[static_cast<size_t>(i)].which = static_cast<Which>(i);
  }
}

IpcChannel* Supervisor::channel(Which w) {
  return kids_[w].pid > 0 && kids_[w].ch.valid() ? &kids_[w].ch : nullptr;
}

bool Supervisor::start(TimePoint now) {
  if (!spawn(kTls, now) || !spawn(kForward, now)) return false;
  connect_pair();
  return true;
}

bool Supervisor::spawn(Which w, TimePoint now) {
  Kid& k = kids_[w];
  UniqueFd mine, theirs;
  if (!make_seqpacket_pair(&mine, &theirs)) {
    LOG_WARN_ERRNO(errno, "socketpair for the %s process", name(w));
    return false;
  }
  const std::string argv0 = daemon_ + ": " + name(w);
  const pid_t pid =
      spawn_child(exe_[w].get(), argv0, std::string("--child=") + name(w), std::move(theirs));
  if (pid < 0) {
    LOG_WARN_ERRNO(errno, "fork of the %s process", name(w));
    return false;
  }
  k.pid = pid;
  k.started = now;
  k.restart_at = TimePoint::max();
  k.ch = IpcChannel(std::move(mine), accepts_[w]);
  k.want_out = false;
  k.next_ping = k.started + limits::kHeartbeatInterval;
  k.ping_sent = TimePoint::max();
  k.late = false;
  loop_.add(k.ch.fd(), EPOLLIN, &k);
  k.registered = true;
  LOG_INFO("started %s process pid=%d", name(w), pid);
  hooks_.on_child_started(w, k.ch);
  return true;
}

void Supervisor::connect_pair() {
  if (!alive(kTls) || !alive(kForward)) return;
  UniqueFd a, b;
  if (!make_stream_pair(&a, &b)) {
    LOG_WARN_ERRNO(errno, "socketpair for the data channel");
    return;
  }
  int err = 0;
  UniqueFd ring = ShmRing::create(&err);
  if (!ring) {
    LOG_WARN_ERRNO(err, "memfd for the data channel");
    return;
  }
  // One eventfd per direction (stream/link.h ChannelWake): each child waits
  // on its own and writes the other's.
  UniqueFd wake_tls(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  UniqueFd wake_fwd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!wake_tls || !wake_fwd) {
    LOG_WARN_ERRNO(errno, "eventfd for the data channel");
    return;
  }
  const uint8_t mine = 0, peer = 1;
  kids_[kTls].ch.send(Msg::kPeerWake, Bytes(&mine, 1), wake_tls.get());
  kids_[kTls].ch.send(Msg::kPeerWake, Bytes(&peer, 1), wake_fwd.get());
  kids_[kForward].ch.send(Msg::kPeerWake, Bytes(&mine, 1), wake_fwd.get());
  kids_[kForward].ch.send(Msg::kPeerWake, Bytes(&peer, 1), wake_tls.get());
  // Both get the same rings, then their own end of the socketpair (EOF).
  kids_[kTls].ch.send(Msg::kPeerRing, {}, ring.get());
  kids_[kForward].ch.send(Msg::kPeerRing, {}, ring.get());
  kids_[kTls].ch.send(Msg::kPeerChannel, {}, a.get());
  kids_[kForward].ch.send(Msg::kPeerChannel, {}, b.get());
}

void Supervisor::Kid::on_io(uint32_t events) noexcept {
  if (events & EPOLLOUT) ch.flush();
  for (int i = 0; i < 64 && ch.valid(); i++) {
    IpcMessage m;
    std::string why;
    const auto r = ch.recv(&m, &why);
    if (r == IpcChannel::Recv::kAgain) break;
    if (r == IpcChannel::Recv::kClosed) {
      sup->drop_channel(*this);  // the exit is reported by SIGCHLD
      break;
    }
    if (r == IpcChannel::Recv::kBad) {
      sup->kill_child(which, "bad control message: " + why);
      break;
    }
    if (m.type == Msg::kPong) {
      sup->on_pong(*this, m);
      continue;
    }
    sup->hooks_.on_child_message(which, m);
  }
}

void Supervisor::on_pong(Kid& k, const IpcMessage& m) noexcept {
  ByteReader r(m.body);
  const uint64_t seq = r.u64();
  const uint64_t log_dropped = r.u64();
  // Only the PING outstanding may be answered, once.
  if (!r.finish() || k.ping_sent == TimePoint::max() || seq != k.ping_seq)
    return kill_child(k.which, "PONG that answers no PING");
  k.ping_sent = TimePoint::max();
  hooks_.on_child_log_dropped(k.which, log_dropped);
  if (k.late) {
    k.late = false;
    LOG_INFO("%s process pid=%d answers again", name(k.which), k.pid);
    hooks_.on_child_answering(k.which, true);
  }
}

void Supervisor::heartbeat(Kid& k, TimePoint now) noexcept {
  if (k.pid <= 0 || !k.ch.valid()) return;
  if (k.ping_sent != TimePoint::max()) {
    const auto waited = now - k.ping_sent;
    if (waited >= limits::kHeartbeatTimeout) {
      k.late = false;
      kill_child(k.which,
                 "no answer to the heartbeat for " +
                     std::to_string(
                         std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()) +
                     " ms (stuck or stopped)");
      hooks_.on_child_answering(k.which, false);
      return;
    }
    if (waited >= limits::kHeartbeatGrace && !k.late) {
      k.late = true;
      LOG_WARN("%s process pid=%d has not answered the heartbeat for %lld ms", name(k.which), k.pid,
               static_cast<long long>(
                   std::chrono::duration_cast<std::chrono::milliseconds>(waited).count()));
      hooks_.on_child_answering(k.which, false);
    }
    return;
  }
  if (now < k.next_ping) return;
  std::vector<uint8_t> body;
  ByteWriter w(body, 8);
  w.u64(++k.ping_seq);
  if (!k.ch.send(Msg::kPing, body)) return kill_child(k.which, "control channel stuck");
  k.ping_sent = now;
  k.next_ping = now + limits::kHeartbeatInterval;
}

void Supervisor::after_batch() noexcept {
  for (Kid& k : kids_) {
    if (k.pid <= 0 || !k.registered) continue;
    if (k.ch.failed()) {
      kill_child(k.which, "its control channel failed (a message could not be sent)");
      continue;
    }
    const bool want = k.ch.wants_write();
    if (want != k.want_out) {
      k.want_out = want;
      loop_.mod(k.ch.fd(), EPOLLIN | (want ? EPOLLOUT : 0u), &k);
    }
  }
}

void Supervisor::drop_channel(Kid& k) {
  if (k.registered) {
    loop_.del(k.ch.fd());
    k.registered = false;
  }
  k.ch = IpcChannel();
}

void Supervisor::kill_child(Which w, const std::string& why) noexcept {
  Kid& k = kids_[w];
  if (k.pid <= 0) return;
  LOG_WARN("killing %s process pid=%d: %s", name(w), k.pid, why.c_str());
  ::kill(k.pid, SIGKILL);
  drop_channel(k);
}

void Supervisor::signal_all(int sig) noexcept {
  for (Kid& k : kids_)
    if (k.pid > 0) ::kill(k.pid, sig);
}

void Supervisor::on_sigchld(TimePoint now) noexcept {
  for (int i = 0; i < 16; i++) {
    int status = 0;
    const pid_t pid = waitpid(-1, &status, WNOHANG);
    if (pid <= 0) return;
    for (Kid& k : kids_) {
      if (k.pid != pid) continue;
      if (WIFSIGNALED(status))
        LOG_WARN("%s process pid=%d killed by signal %d (%s)", name(k.which), pid, WTERMSIG(status),
                 strsignal(WTERMSIG(status)));
      else if (WEXITSTATUS(status) != 0 || !stopping_)
        LOG_WARN("%s process pid=%d exited with status %d", name(k.which), pid,
                 WEXITSTATUS(status));
      k.pid = -1;
      drop_channel(k);
      if (now - k.started >= kStableRun) k.failures = 0;
      const auto delay =
          std::min<Duration>(kRestartCap, kRestartBase * (1u << std::min(k.failures, 7u)));
      k.failures++;
      // Another version's executable refuses every time: the parent stops.
      const bool hopeless = WIFEXITED(status) && WEXITSTATUS(status) == kExitVersionMismatch;
      if (!stopping_ && !hopeless) {
        k.restart_at = now + delay;
        LOG_INFO("restarting %s process in %lld ms", name(k.which),
                 static_cast<long long>(
                     std::chrono::duration_cast<std::chrono::milliseconds>(delay).count()));
      }
      hooks_.on_child_exited(k.which, status);
    }
  }
}

void Supervisor::tick(TimePoint now) noexcept {
  // The loop wakes at least once per heartbeat interval (next_deadline): a
  // gap of more than the grace on top means the parent itself was not running
  // (stopped with its process group, a paused machine). Its children were no
  // slower than it: start their clocks again rather than kill them for it.
  if (last_tick_ != TimePoint{} &&
      now - last_tick_ > limits::kHeartbeatInterval + limits::kHeartbeatGrace)
    for (Kid& k : kids_)
      if (k.ping_sent != TimePoint::max()) k.ping_sent = now;
  last_tick_ = now;
  // The heartbeat runs while draining too: a stuck child would hold the
  // drain to its deadline.
  for (Kid& k : kids_) heartbeat(k, now);
  if (stopping_) return;
  bool spawned = false;
  for (Kid& k : kids_) {
    if (k.pid <= 0 && k.restart_at <= now) {
      if (spawn(k.which, now)) {
        restarts_++;
        spawned = true;
      } else {
        k.restart_at = now + kRestartCap;
      }
    }
  }
  if (spawned) connect_pair();
}

TimePoint Supervisor::next_deadline() const {
  TimePoint t = TimePoint::max();
  for (const Kid& k : kids_) {
    if (k.pid <= 0 || !k.ch.valid()) continue;
    t = std::min(t, last_tick_ + limits::kHeartbeatInterval);  // see tick()
    if (k.ping_sent == TimePoint::max())
      t = std::min(t, k.next_ping);
    else
      t = std::min(t, k.late ? k.ping_sent + limits::kHeartbeatTimeout
                             : k.ping_sent + limits::kHeartbeatGrace);
  }
  if (stopping_) return t;
  for (const Kid& k : kids_)
    if (k.pid <= 0) t = std::min(t, k.restart_at);
  return t;
}

}  // namespace ct
