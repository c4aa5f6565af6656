#include "shared/proc/child.h"

#include <signal.h>
#include <unistd.h>

#include <cstring>
#include <random>

#include "shared/base/log.h"
#include "shared/proc/spawn.h"

namespace ct {

ChildBase::ChildBase(const char* daemon, const char* process, std::vector<MsgRule> accepts)
    : boot_(child_take_control()), daemon_(daemon), process_(process), parent_(getppid()) {
  // Every child answers the parent's heartbeat (from its loop, so a stuck
  // loop is noticed).
  accepts.push_back({Msg::kPing, false, 8});
  ctl_ = IpcChannel(std::move(boot_), accepts);
  log::init(daemon, process, log::kInfo);
  signal(SIGPIPE, SIG_IGN);
  // Terminal signals reach the whole process group; only the parent acts on
  // them (it drains the children over the control channel).
  loop_.watch_signals({SIGINT, SIGTERM, SIGHUP}, [](int) {});
  loop_.add(ctl_.fd(), EPOLLIN, this);
}

std::unique_ptr<PlainLink> ChildBase::open_data_channel(Link::Owner& owner, UniqueFd fd,
                                                        const SessionConfig& cfg) {
  if (!peer_ring_) return nullptr;
  return std::make_unique<PlainLink>(loop_, owner, 0, std::move(fd), std::move(peer_ring_), cfg,
                                     Clock::now());
}

bool ChildBase::end_if_broken(const PlainLink& l) {
  if (!l.failed()) return false;
  LOG_ERROR("the %s process broke the data channel; exiting so both ends start afresh",
            std::string_view(process_) == "tls" ? "forwarding" : "TLS");
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
    if (m.type == Msg::kSettings) {
      auto s = decode_settings(m.body);
      if (have_settings_ || !s) {
        LOG_ERROR("SETTINGS %s; exiting", have_settings_ ? "sent twice" : "malformed");
        exit_child(1);
        return;
      }
      settings_ = *s;
      have_settings_ = true;
      log::set_level(static_cast<log::Level>(settings_.log_level));
    }
    if (have_settings_ && m.type == Msg::kPeerRing) {
      // Mapped now, used by the PEER_CHANNEL that follows (open_data_channel()).
      std::string map_err;
      peer_ring_ = ShmRing::map(
          m.fd.get(),
          std::string_view(process_) == "tls" ? ShmRing::Side::kTls : ShmRing::Side::kForward,
          &map_err);
      if (!peer_ring_) {
        LOG_ERROR("%s; exiting", map_err.c_str());
        exit_child(1);
        return;
      }
      continue;
    }
    const bool allowed = have_settings_ && on_message(m);
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
