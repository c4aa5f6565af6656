#include "shared/proc/child.h"

#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "shared/base/log.h"
#include "shared/proc/spawn.h"

namespace ct {

ChildBase::ChildBase(const DaemonProcs& procs, ProcRole role, CreditPool* budget)
    : boot_(child_take_control()),
      spec_(procs.of(role)),
      daemon_(procs.daemon),
      budget_(budget),
      parent_(getppid()) {
  ctl_ = IpcChannel(std::move(boot_), spec_.from_parent);
  log::init(daemon_, role_name(role), log::kInfo);
  signal(SIGPIPE, SIG_IGN);
  // Terminal signals reach the whole process group; only the parent acts on
  // them (it drains the children over the control channel).
  loop_.watch_signals({SIGINT, SIGTERM, SIGHUP}, [](int) {});
  loop_.add(ctl_.fd(), EPOLLIN, this);
}

bool ChildBase::on_settings(const IpcMessage& m) noexcept {
  auto s = decode_settings(m.body);
  if (!s) return false;
  settings_ = *s;
  log::set_level(static_cast<log::Level>(settings_.log_level));
  budget_->set_limit(uint64_t{settings_.memory_budget_mib} << 20);
  return true;
}

// The data channel: the socket of this PEER_CHANNEL and the rings of the
// PEER_RING the table made come just before it. It replaces the old channel,
// whose close resets the streams that ran over it.
bool ChildBase::on_peer_channel(UniqueFd fd) noexcept {
  if (!peer_ring_ || !peer_wake_.valid()) return false;
  const DataChannelSpec& d = spec_.data_channel;
  SessionConfig c;
  c.role = spec_.role == ProcRole::kTls ? Role::kTlsProcess : Role::kForwardProcess;
  c.opener = d.opens_streams;
  c.stream_window = d.stream_window;
  c.ping_interval = Duration::zero();  // a socketpair: the sibling's death is its EOF
  c.instance = random_instance();
  c.pool = budget_;
  if (d.pooled_initial_window != 0) c.pooled_initial_window = d.pooled_initial_window;
  auto next = std::make_unique<PlainLink>(loop_, *this, 0, std::move(fd), std::move(peer_ring_),
                                          std::move(peer_wake_), c, Clock::now());
  peer_wake_ = ChannelWake{};
  if (local_) local_->close("replaced by a new data channel");
  local_ = std::move(next);
  on_data_channel();
  return true;
}

bool ChildBase::end_if_broken(const PlainLink& l) {
  if (!l.failed()) return false;
  LOG_ERROR("the %s process broke the data channel; exiting so both ends start afresh",
            spec_.role == ProcRole::kTls ? "forwarding" : "TLS");
  exit_child(1);
  return true;
}

void ChildBase::send(Msg type, Bytes body, int fd) {
  if (!ctl_.send(type, body, fd)) {
    LOG_ERROR("control channel to the parent is stuck; exiting");
    exit_child(1);
  }
}

void ChildBase::on_io(uint32_t events) noexcept {
  if (events & EPOLLOUT) ctl_.flush();
  for (int i = 0; i < 64; i++) {
    IpcMessage m;
    std::string why;
    const auto r = ctl_.recv(&m, &why);
    if (r == IpcChannel::Recv::kAgain) break;
    if (r == IpcChannel::Recv::kClosed) {
      // The parent is gone; PDEATHSIG would follow anyway.
      exit_child(0);
      return;
    }
    if (r == IpcChannel::Recv::kFdLost) {
      if (on_fd_lost(m)) continue;
      LOG_ERROR("control message %u from the parent: %s; exiting", static_cast<unsigned>(m.type),
                why.c_str());
      exit_child(1);
      return;
    }
    if (r == IpcChannel::Recv::kBad) {
      LOG_ERROR("bad control message from the parent: %s; exiting", why.c_str());
      exit_child(1);
      return;
    }
    if (m.type == Msg::kPing) {
      // The answer also carries our dropped log lines: a daemon whose
      // stderr is full has no other way to learn them (the bridge's status
      // file reports them, the broker's metrics have them anyway).
      std::vector<uint8_t> body(m.body);
      ByteWriter w(body, 16);
      w.u64(log::dropped_lines());
      send(Msg::kPong, body);
      continue;
    }
    bool allowed = true;
    switch (m.type) {
      case Msg::kSettings:
        if (!on_settings(m)) {
          LOG_ERROR("SETTINGS malformed; exiting");
          exit_child(1);
          return;
        }
        allowed = on_message(m);
        break;
      case Msg::kPeerWake:
        // Kept for the PEER_CHANNEL that follows (with PEER_RING): body 0 is
        // ours to wait on, 1 the peer's to write.
        if (m.body.size() != 1 || m.body[0] > 1) {
          allowed = false;
          break;
        }
        (m.body[0] == 0 ? peer_wake_.mine : peer_wake_.peer) = std::move(m.fd);
        break;
      case Msg::kPeerRing: {
        // Mapped now, used by the PEER_CHANNEL that follows (the table
        // admits nothing else in between).
        auto ring =
            ShmRing::map(m.fd.get(), spec_.role == ProcRole::kTls ? ShmRing::Side::kTls
                                                                  : ShmRing::Side::kForward);
        if (!ring) {
          LOG_ERROR("%s; exiting", ring.what().c_str());
          exit_child(1);
          return;
        }
        peer_ring_ = std::move(*ring);
        break;
      }
      case Msg::kPeerChannel:
        allowed = on_peer_channel(std::move(m.fd));
        break;
      case Msg::kDrain:
        draining_ = true;
        on_drain();
        break;
      default:
        allowed = on_message(m);
    }
    // A MATERIAL body holds the private key: no copy outlives its handling.
    if (!m.body.empty()) explicit_bzero(m.body.data(), m.body.size());
    if (!allowed) {
      LOG_ERROR("control message %s not allowed now; exiting", msg_name(m.type));
      exit_child(1);
      return;
    }
  }
  loop_.mod(ctl_.fd(), EPOLLIN | (ctl_.wants_write() ? EPOLLOUT : 0u), this);
}

void ChildBase::enter_sandbox(SandboxSpec spec) {
  if (sandboxed_) return;
  spec.drop_user = settings_.drop_user;
  spec.parent = parent_;
  spec.uid = settings_.uid;
  spec.gid = settings_.gid;
  sandbox_enter(spec);
  sandboxed_ = true;
}

std::array<uint8_t, 16> ChildBase::random_instance() {
  std::array<uint8_t, 16> id{};
  std::random_device rd;
  for (auto& b : id) b = static_cast<uint8_t>(rd());
  return id;
}

int ChildBase::run() {
  Timer deadlines(loop_.timers(), [this](TimePoint now) { on_tick(now); });
  auto batch_done = [this, &deadlines] {
    after_batch();
    if (ctl_.wants_write()) ctl_.flush();
    if (!loop_.stopped() && draining_ && drained()) {
      LOG_INFO("drained");
      exit_child(0);
    }
    if (!loop_.stopped()) deadlines.arm(next_deadline());
  };
  loop_.set_after_batch(batch_done);
  on_tick(Clock::now());
  if (!loop_.stopped()) batch_done();
  while (loop_.run_once()) {
  }
  loop_.set_after_batch(nullptr);  // `deadlines` dies with this frame
  return exit_code_;
}

}  // namespace ct
