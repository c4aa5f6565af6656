// A daemon's processes as data, OpenSSH monitor style: for each process its
// role, the control messages it accepts and from whom (with their phase, once
// and pairing bits, enforced by IpcChannel), its end of the data channel and
// the name of its sandbox policy. Each daemon declares its table once
// (broker/procs.h, bridge/procs.h); the parent, the children, the IPC fuzzer
// and `--ipc-policy PROCESS` all read that one declaration.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string_view>

#include "shared/ipc/channel.h"
#include "shared/os/sandbox.h"

namespace ct {

enum class ProcRole : uint8_t { kParent, kTls, kForward };

constexpr const char* role_name(ProcRole r) {
  return r == ProcRole::kParent ? "parent" : r == ProcRole::kTls ? "tls" : "forward";
}
// The role a command-line name stands for ("tls"), if any.
std::optional<ProcRole> role_from_name(std::string_view name);

// A child's end of the data channel between the TLS and forwarding processes.
struct DataChannelSpec {
  bool opens_streams;      // this end opens a stream per wrapper
  uint32_t stream_window;  // what it grants per stream
  // Non-zero: streams start with this window and grow from the process's
  // memory budget (session.h CreditPool), for wrappers that may wait.
  uint32_t pooled_initial_window = 0;
};

// The rows every child's table has: SETTINGS first and once (it opens the
// running phase), the data channel's two PEER_WAKE eventfds and its
// PEER_RING + PEER_CHANNEL pair (again whenever the sibling restarts), DRAIN
// once, and the heartbeat any time.
// clang-format off
inline constexpr MsgRule kChildRules[] = {
    {Msg::kSettings, false, 4096, kPhaseSetup, kOnce | kOpens},
    {Msg::kPeerWake, true, 1, kPhaseRunning},
    {Msg::kPeerRing, true, 0, kPhaseRunning},
    {Msg::kPeerChannel, true, 0, kPhaseRunning, 0, Msg::kPeerRing},
    {Msg::kDrain, false, 0, kPhaseRunning, kOnce},
    {Msg::kPing, false, 8, kPhaseAny},
};

// The rows every parent has for its TLS process: READY after every MATERIAL
// it applied (the first opens the running phase), MATERIAL_ERROR instead
// when it refused one, STATUS about its links (which need material, so after
// READY), and the heartbeat's answer.
inline constexpr MsgRule kFromTlsRules[] = {
    {Msg::kReady, false, 0, kPhaseAny, kOpens},
    {Msg::kMaterialError, false, 1024, kPhaseAny},
    {Msg::kStatus, false, 1024, kPhaseRunning},
    {Msg::kPong, false, 16, kPhaseAny},
};

// What the parent takes from any forwarding process: READY once, when its
// settings are applied, and the heartbeat's answer.
inline constexpr MsgRule kParentFromForward[] = {
    {Msg::kReady, false, 0, kPhaseSetup, kOnce | kOpens},
    {Msg::kPong, false, 16, kPhaseAny},
};
// clang-format on

// `common` followed by a process's own rows, as one table (compile time).
template <size_t C, size_t N>
constexpr std::array<MsgRule, C + N> table_of(const MsgRule (&common)[C], const MsgRule (&own)[N]) {
  std::array<MsgRule, C + N> t{};
  size_t i = 0;
  for (const MsgRule& r : common) t[i++] = r;
  for (const MsgRule& r : own) t[i++] = r;
  return t;
}
template <size_t C>
constexpr std::array<MsgRule, C> table_of(const MsgRule (&common)[C]) {
  std::array<MsgRule, C> t{};
  for (size_t i = 0; i < C; i++) t[i] = common[i];
  return t;
}

struct ProcessSpec {
  ProcRole role;
  // What the process accepts on its control channels: a child from the
  // parent; the parent from each child.
  std::span<const MsgRule> from_parent;
  std::span<const MsgRule> from_tls;
  std::span<const MsgRule> from_forward;
  DataChannelSpec data_channel;  // unused for the parent
  const char* sandbox;           // its seccomp policy (--sandbox-policy), nullptr: none
};

struct DaemonProcs {
  const char* daemon;  // "vault-bridge"
  ProcessSpec parent, tls, forward;

  constexpr const ProcessSpec& of(ProcRole r) const {
    return r == ProcRole::kParent ? parent : r == ProcRole::kTls ? tls : forward;
  }
};

// A child's sandbox: its policy's name from the table, `syscalls` beyond the
// common set, and the TCP options every child sets on its sockets (NODELAY;
// keepalive and TCP_USER_TIMEOUT on links; SO_LINGER 0 for a reset). The
// caller adds what is its own (an fd cap, the one port it may connect to).
SandboxSpec child_sandbox(const ProcessSpec& p, std::span<const SyscallRule> syscalls);

// `--ipc-policy PROCESS`: one line per message the process accepts (sender,
// type, fd, size cap, phase, once), then its data channel and sandbox, in the
// shape of `--sandbox-policy` (comments start with #).
void ipc_print_policy(const DaemonProcs& procs, ProcRole role);

}  // namespace ct
