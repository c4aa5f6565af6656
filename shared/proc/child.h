// What every child process (TLS or forwarding, broker or bridge) shares: the
// control channel to the parent on fd 3 (its rules from the daemon's process
// table, process_spec.h), its loop, the rule that the child lives only as long
// as that channel (parent gone: exit at once), the data channel to its
// sibling (PEER_RING + PEER_CHANNEL) and the drain (DRAIN, then exit once
// nothing is left).
#pragma once

#include <array>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "shared/base/log.h"
#include "shared/ipc/channel.h"
#include "shared/ipc/msgs.h"
#include "shared/ipc/shm_ring.h"
#include "shared/os/loop.h"
#include "shared/os/sandbox.h"
#include "shared/proc/process_spec.h"
#include "shared/stream/link.h"
#include "shared/stream/splice.h"

namespace ct {

class ChildBase : public Loop::Handler, public Link::Owner {
 public:
  // `budget` is the process's --memory-budget for stream data, set from
  // SETTINGS; it outlives the process object (retired sessions return credit
  // to it after the object is gone).
  ChildBase(const DaemonProcs& procs, ProcRole role, CreditPool* budget);
  ~ChildBase() override = default;
  // Runs the loop until exit_child() or the parent goes away; returns the exit code.
  int run();

 protected:
  // A message from the parent, already checked against the process's table
  // (type, size, fd, phase, once). SETTINGS comes here after settings_ and the
  // budget are set; PEER_RING, PEER_CHANNEL, DRAIN and PING never do.
  // Returning false means "not allowed now": the child exits (error policy).
  virtual bool on_message(IpcMessage& m) noexcept = 0;
  // `m` came without the fd it carried: this process is at its fd limit
  // (IpcChannel::Recv::kFdLost). True: handled (e.g. a dial counted as
  // failed); false: the process exits and its parent restarts it.
  virtual bool on_fd_lost(const IpcMessage& m) noexcept {
    (void)m;
    return false;
  }
  // local_ is a new data channel (the old one, if any, was closed first).
  virtual void on_data_channel() noexcept {}
  // DRAIN arrived (once): stop taking new work; the open streams finish.
  virtual void on_drain() noexcept = 0;
  // While draining, after every batch: true when nothing is left, after the
  // process's last writes. The child then exits 0.
  virtual bool drained() noexcept = 0;
  // The process's own deadline work (each link has its own timer): run by a
  // timer that after every batch is re-armed for next_deadline(), so an
  // iteration with nothing due never calls it.
  virtual void on_tick(TimePoint now) noexcept = 0;
  virtual TimePoint next_deadline() const = 0;
  // After every batch of events and timers (before drained()): flushes, and
  // the checks that follow from events rather than time.
  virtual void after_batch() noexcept {}
  void exit_child(int code) {
    exit_code_ = code;
    loop_.stop();
  }
  void send(Msg type, Bytes body, int fd = -1);
  // STATUS to the parent (logged there and put in sd_notify) when the number
  // of links up changed since the last one; `text` is asked only then.
  // Returns whether it was sent.
  template <class Text>
  bool report_links_up(uint32_t up, Text text) {
    Status s;
    s.links_up = up;
    return report_status(std::move(s), text);
  }
  // The same with every field of STATUS (the bridge's instances); sent when
  // any field but the text changed.
  template <class Text>
  bool report_status(Status s, Text text) {
    if (reported_ && reported_->same_state(s)) return false;
    s.text = text();
    send(Msg::kStatus, encode_status(s));
    reported_ = std::move(s);
    return true;
  }
  // Enters `spec`'s sandbox as the user the parent chose (settings); once.
  void enter_sandbox(SandboxSpec spec);
  // A random id for a session's HELLO (logs only).
  static std::array<uint8_t, 16> random_instance();
  void on_io(uint32_t events) noexcept override;
  // A forwarding process's data-channel events, each to its stream's splice
  // unless `claim(ev)` takes it first; an error is only logged (the close
  // that follows ends every splice). Then the splices write what they were
  // given before the channel is read again: they write straight from its
  // input buffer (Splice::flush).
  template <class Claim>
  void route_to_splices(Link& l, SpliceTable& splices, Claim claim) {
    for (const Event& ev : l.session().take_events()) {
      if (claim(ev)) continue;
      if (ev.kind == Event::kError) {
        // NO_ERROR is the sibling's clean stop (the daemon stopping): info.
        if (ev.code == Code::kNoError)
          LOG_INFO("data channel closed by the TLS process: %s", std::string(ev.what).c_str());
        else
          LOG_WARN("data channel error %s: %s", std::string(code_name(ev.code)).c_str(),
                   std::string(ev.what).c_str());
        continue;
      }
      splices.dispatch(l, ev);
    }
    splices.flush();
  }
  // How to log the end of the data channel `l`: info when it is part of a
  // clean stop (this process draining, or the sibling's NO_ERROR), else warn.
  log::Level channel_end_level(const Link& l) const {
    return draining_ || l.close_reason().find("NO_ERROR") != std::string::npos ? log::kInfo
                                                                               : log::kWarn;
  }
  // The data channel `l` closed. If the sibling broke it, this process ends
  // (the parent restarts it and joins both ends afresh) and it returns true.
  bool end_if_broken(const PlainLink& l);

  // Taken first, before any member opens an fd: it closes every fd above 3.
  UniqueFd boot_;
  Loop loop_;
  IpcChannel ctl_;
  ProcSettings settings_;
  const ProcessSpec& spec_;
  const char* daemon_;
  // The data channel to the sibling process (null until PEER_CHANNEL, and
  // after it closed: the owner's on_link_closed retires it).
  std::unique_ptr<PlainLink> local_;
  std::optional<Status> reported_;  // report_status: the last one sent
  bool draining_ = false;

 private:
  bool on_settings(const IpcMessage& m) noexcept;
  bool on_peer_channel(UniqueFd fd) noexcept;
  CreditPool* budget_;
  int exit_code_ = 0;
  pid_t parent_;  // spawn_child armed PDEATHSIG for this parent; the sandbox re-arms it
  std::unique_ptr<ShmRing> peer_ring_;
  ChannelWake peer_wake_;  // the PEER_WAKE eventfds for the next PEER_CHANNEL
  bool sandboxed_ = false;
};

// The main of a child process whose class is P.
template <class P>
int run_child() {
  P p;
  return p.run();
}

}  // namespace ct
