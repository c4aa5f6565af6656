// The typed message layer between the processes of one daemon (parent <->
// child control channels). One message per SOCK_SEQPACKET datagram:
//
//   u16 type | u16 reserved (0) | u32 body length | body
//
// Each channel end declares the types it accepts, whether each carries exactly
// one fd (SCM_RIGHTS) or none, and a per-type size cap. Anything else - an
// unknown type, a wrong length, a missing or unexpected fd, a truncated
// datagram - is a bad message, and a bad internal message ends the receiving
// process (docs/architecture.md, error policy). Received fds land in UniqueFd.
#pragma once

#include <cstdint>
#include <deque>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "shared/base/bytes.h"
#include "shared/base/result.h"
#include "shared/base/unique_fd.h"

namespace ct {

enum class Msg : uint16_t {
  kNone = 0,  // no message: MsgRule::after's "no predecessor required"
  // parent -> child
  kSettings = 1,         // process settings (msgs.h)
  kMaterial = 2,         // certificate, key, CA and pins for the TLS process
  kListener = 3,         // fd: a bound listening socket
  kPeerChannel = 4,      // fd: the socketpair end joining the TLS and forwarding processes
  kDialed = 5,           // fd: a connected socket to the broker (bridge)
  kDialFailed = 6,       // text: why the dial failed (bridge)
  kDrain = 7,            // stop accepting, goaway, finish streams
  kMetricsListener = 8,  // fd: the broker's --metrics-listen socket (forwarding process)
  kPeerRing = 9,   // fd: the data channel's shared-memory rings (shm_ring.h), before PEER_CHANNEL
  kPing = 10,      // u64: the heartbeat; the child's loop answers PONG with the same number
  kPeerWake = 11,  // fd: an eventfd of the data channel; u8 0 = ours to wait on, 1 = the peer's
  // child -> parent
  kReady = 32,          // settings (and material) applied
  kMaterialError = 33,  // text: why the material was refused
  kDialRequest = 34,    // bridge TLS process wants a connection to the broker
  kStatus = 35,         // u32 links up, text
  kStats = 37,          // metric samples (metrics.h): broker tls -> parent -> forward
  kPong = 38,           // u64 PING's number, u64 log lines the child dropped (log.h)
};
const char* msg_name(Msg m);

// When a message may arrive on a channel end. A channel starts in its setup
// phase; the one message marked kOpens (SETTINGS towards a child, READY
// towards the parent) moves it to the running phase for good.
inline constexpr uint8_t kPhaseSetup = 1;
inline constexpr uint8_t kPhaseRunning = 2;
inline constexpr uint8_t kPhaseAny = kPhaseSetup | kPhaseRunning;
// MsgRule::flags.
inline constexpr uint8_t kOnce = 1;   // a second one is refused
inline constexpr uint8_t kOpens = 2;  // its arrival starts the running phase

// One accepted message type of a channel end. The processes' tables are in
// broker/procs.h and bridge/procs.h (`--ipc-policy PROCESS` prints them).
struct MsgRule {
  Msg type;
  bool has_fd;
  uint32_t max_len;
  uint8_t when = kPhaseAny;  // kPhaseSetup, kPhaseRunning or both
  uint8_t flags = 0;         // kOnce, kOpens
  // Allowed only as the message right after `after` (PEER_CHANNEL after
  // PEER_RING), which must then be followed by this one and nothing else.
  Msg after = Msg::kNone;
};

// The phase, once and pairing bits of one channel end's table, enforced over
// the sequence of messages that passed ipc_check (sans-IO; IpcChannel::recv
// runs every message through one). A refusal is a bad message like any other.
class MsgSequence {
 public:
  MsgSequence() = default;
  explicit MsgSequence(std::span<const MsgRule> rules) : rules_(rules.begin(), rules.end()) {}
  // `type` has a rule in the table (ipc_check found it). Fails, saying why,
  // when it is not allowed now; the state then no longer matters (the
  // receiving process ends).
  Result<void> admit(Msg type);
  bool running() const { return running_; }
  std::span<const MsgRule> rules() const { return rules_; }

 private:
  const MsgRule* find(Msg type) const;
  std::vector<MsgRule> rules_;
  std::vector<Msg> seen_once_;  // kOnce types already received
  Msg last_ = Msg::kNone;
  bool running_ = false;
};

struct IpcMessage {
  Msg type = Msg::kReady;
  std::vector<uint8_t> body;
  UniqueFd fd;
};

class IpcChannel {
 public:
  IpcChannel() = default;
  IpcChannel(UniqueFd fd, std::span<const MsgRule> accepts);

  ~IpcChannel();
  IpcChannel(IpcChannel&&) = default;
  // Wipes what this channel still had queued before taking the other's.
  IpcChannel& operator=(IpcChannel&& o) noexcept;

  // Queues a message (with an fd to pass, which is duplicated). Never blocks.
  // Returns false when the queue is over its cap (the peer is not reading) or
  // the socket failed (e.g. EMSGSIZE); failed() then stays true.
  bool send(Msg type, Bytes body, int pass_fd = -1);
  bool send(Msg type, std::string_view text) { return send(type, as_bytes(text)); }
  // Writes what is queued; false on a fatal socket error.
  bool flush();
  bool wants_write() const { return !queue_.empty(); }
  // A send could not be queued or a queued one cannot ever be written: the
  // receiving process is treated as dead (the parent restarts it).
  bool failed() const { return failed_; }

  enum class Recv { kMessage, kAgain, kClosed, kBad, kFdLost };
  // Receives one message. kBad sets *why; the caller ends its process.
  // kFdLost: a valid message whose fd this process could not take (it is
  // at its fd limit); *out holds it without the fd, *why says so. The
  // caller drops it if it can (a dial that failed), else ends its process.
  Recv recv(IpcMessage* out, std::string* why);

  int fd() const { return fd_.get(); }
  bool valid() const { return fd_.valid(); }

 private:
  struct Pending {
    std::vector<uint8_t> datagram;
    UniqueFd fd;
  };
  UniqueFd fd_;
  MsgSequence rules_;
  void wipe_queue() noexcept;
  std::deque<Pending> queue_;
  bool failed_ = false;
  // The receive buffer: one datagram of the largest size, allocated on the
  // first recv() and reused (not a fresh zero-filled MiB per call).
  std::unique_ptr<uint8_t[]> rbuf_;
};

// Validates one received datagram against the rules' type, fd and size
// columns (exposed for the fuzzer); MsgSequence adds the order.
// The message has its type and body; its fd, if any, is the caller's to add.
Result<IpcMessage> ipc_check(Bytes datagram, int nfds, std::span<const MsgRule> accepts);

// A connected SOCK_SEQPACKET pair (control channels) or SOCK_STREAM pair (the
// data channel between TLS and forwarding processes), both CLOEXEC.
bool make_seqpacket_pair(UniqueFd* a, UniqueFd* b);
bool make_stream_pair(UniqueFd* a, UniqueFd* b);

}  // namespace ct
