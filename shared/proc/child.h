// What every child process (TLS or forwarding, broker or bridge) shares: the
// control channel to the parent on fd 3, its loop, and the rule that the
// child lives only as long as that channel (parent gone: exit at once).
#pragma once

#include <array>
#include <memory>
#include <string>
#include <vector>

#include "shared/ipc/channel.h"
#include "shared/ipc/msgs.h"
#include "shared/ipc/shm_ring.h"
#include "shared/os/loop.h"
#include "shared/os/sandbox.h"
#include "shared/stream/link.h"

namespace ct {

class ChildBase : public Loop::Handler {
 public:
  ChildBase(const char* daemon, const char* process, std::vector<MsgRule> accepts);
  ~ChildBase() override = default;
  // Runs the loop until exit_child() or the parent goes away; returns the exit code.
  int run();

 protected:
  // A message from the parent, already checked against the accepted types.
  // Returning false means "not allowed now": the child exits (error policy).
  virtual bool on_message(IpcMessage& m) noexcept = 0;
  // The process's own deadline work (each link has its own timer): run by a
  // timer that after every batch is re-armed for next_deadline(), so an
  // iteration with nothing due never calls it.
  virtual void on_tick(TimePoint now) noexcept = 0;
  virtual TimePoint next_deadline() const = 0;
  // After every batch of events and timers: flushes, and the checks that
  // follow from events rather than time (drained: exit).
  virtual void after_batch() noexcept {}
  void exit_child(int code) {
    exit_code_ = code;
    loop_.stop();
  }
  void send(Msg type, Bytes body, int fd = -1);
  // Enters `spec`'s sandbox as the user the parent chose (settings); once.
  void enter_sandbox(SandboxSpec spec);
  bool sandboxed() const { return sandboxed_; }
  // A random id for a session's HELLO (logs only).
  static std::array<uint8_t, 16> random_instance();
  void on_io(uint32_t events) noexcept override;
  // The data channel of a PEER_CHANNEL: its socket and the rings the PEER_RING
  // just before it brought. Null when no PEER_RING came first (the message is
  // then not allowed now).
  std::unique_ptr<PlainLink> open_data_channel(Link::Owner& owner, UniqueFd fd,
                                               const SessionConfig& cfg);
  // The data channel `l` closed. If the sibling broke it, this process ends
  // (the parent restarts it and joins both ends afresh) and it returns true.
  bool end_if_broken(const PlainLink& l);

  // Taken first, before any member opens an fd: it closes every fd above 3.
  UniqueFd boot_;
  Loop loop_;
  IpcChannel ctl_;
  ProcSettings settings_;
  bool have_settings_ = false;
  const char* daemon_;
  const char* process_;

 private:
  int exit_code_ = 0;
  pid_t parent_;  // spawn_child armed PDEATHSIG for this parent; the sandbox re-arms it
  std::unique_ptr<ShmRing> peer_ring_;
  bool sandboxed_ = false;
};

}  // namespace ct
