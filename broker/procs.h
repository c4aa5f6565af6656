// cloudtaser-broker's processes, declared once (shared/proc/process_spec.h):
// who may send each process what, when, and in which size. `cloudtaser-broker
// --ipc-policy PROCESS` prints a process's rows; docs/privsep.md explains them.
#pragma once

#include "shared/ipc/channel.h"
#include "shared/os/admission.h"
#include "shared/proc/process_spec.h"
#include "shared/wire/limits.h"

namespace ct::broker {

inline constexpr uint32_t kMaxMaterial = static_cast<uint32_t>(limits::kMaxIpcMessage);

// The TLS process, from the parent. LISTENER: the --bridge-listen socket.
inline constexpr MsgRule kTlsFromParent[] = {
    {Msg::kSettings, false, 4096, kPhaseSetup, kOnce | kOpens},
    {Msg::kMaterial, false, kMaxMaterial, kPhaseRunning},  // again at every reload
    {Msg::kListener, true, 0, kPhaseRunning, kOnce},
    {Msg::kPeerRing, true, 0, kPhaseRunning},  // again whenever the forwarding process restarts
    {Msg::kPeerChannel, true, 0, kPhaseRunning, 0, Msg::kPeerRing},
    {Msg::kDrain, false, 0, kPhaseRunning, kOnce},
    {Msg::kPing, false, 8, kPhaseAny},
};

// The forwarding process, from the parent. LISTENER (--service-listen) and
// METRICS_LISTENER (--metrics-listen, then the probe port) carry the port's
// ListenerOptions; STATS are the TLS process's figures, which it serves.
inline constexpr MsgRule kForwardFromParent[] = {
    {Msg::kSettings, false, 4096, kPhaseSetup, kOnce | kOpens},
    {Msg::kListener, true, kListenerOptionsSize, kPhaseRunning, kOnce},
    {Msg::kMetricsListener, true, kListenerOptionsSize,
     kPhaseRunning},  // once per port (checked there)
    {Msg::kStats, false, 8192, kPhaseRunning},
    {Msg::kPeerRing, true, 0, kPhaseRunning},
    {Msg::kPeerChannel, true, 0, kPhaseRunning, 0, Msg::kPeerRing},
    {Msg::kDrain, false, 0, kPhaseRunning, kOnce},
    {Msg::kPing, false, 8, kPhaseAny},
};

// The parent, from the TLS process: READY after every MATERIAL it applied,
// MATERIAL_ERROR instead when it refused one; STATS once a second from its
// first loop turn; STATUS only about bridge links, which need material.
inline constexpr MsgRule kParentFromTls[] = {
    {Msg::kReady, false, 0, kPhaseAny, kOpens}, {Msg::kMaterialError, false, 1024, kPhaseAny},
    {Msg::kStatus, false, 1024, kPhaseRunning}, {Msg::kStats, false, 8192, kPhaseAny},
    {Msg::kPong, false, 16, kPhaseAny},
};

// The parent, from the forwarding process: READY once its settings are applied.
inline constexpr MsgRule kParentFromForward[] = {
    {Msg::kReady, false, 0, kPhaseSetup, kOnce | kOpens},
    {Msg::kPong, false, 16, kPhaseAny},
};

inline constexpr DaemonProcs kProcs = {
    "cloudtaser-broker",
    {ProcRole::kParent, {}, kParentFromTls, kParentFromForward, {false, 0}, nullptr},
    // Wrappers may wait here for a bridge: their streams start with a small
    // window and grow from the memory budget.
    {ProcRole::kTls,
     kTlsFromParent,
     {},
     {},
     {false, limits::kPendingStreamWindow, limits::kPendingInitialWindow},
     "cloudtaser-broker tls"},
    {ProcRole::kForward,
     kForwardFromParent,
     {},
     {},
     {true, limits::kLocalStreamWindow},
     "cloudtaser-broker forward"},
};

}  // namespace ct::broker
