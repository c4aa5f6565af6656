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

// clang-format off
// The TLS process, from the parent, beyond every child's rows. LISTENER: the
// --bridge-listen socket (reverse-connect mode).
inline constexpr auto kTlsFromParent = table_of(kChildRules, {
    {Msg::kMaterial, false, kMaxMaterial, kPhaseRunning},  // again at every reload
    {Msg::kListener, true, 0, kPhaseRunning, kOnce},
    // Beacon mode: the answer to DIAL_REQUEST (a socket to the beacon, or why not).
    {Msg::kDialed, true, 0, kPhaseRunning},
    {Msg::kDialFailed, false, 1024, kPhaseRunning},
});

// The forwarding process, from the parent. LISTENER (--service-listen) and
// METRICS_LISTENER (--metrics-listen, then the probe port; once per port,
// checked by the process) carry the port's ListenerOptions; STATS are the
// TLS process's figures, which it serves.
inline constexpr auto kForwardFromParent = table_of(kChildRules, {
    {Msg::kListener, true, kListenerOptionsSize, kPhaseRunning, kOnce},
    {Msg::kMetricsListener, true, kListenerOptionsSize, kPhaseRunning},
    {Msg::kStats, false, 8192, kPhaseRunning},
});

// The parent, from the TLS process: also its metric samples, once a second
// from its first loop turn.
inline constexpr auto kParentFromTls = table_of(kFromTlsRules, {
    {Msg::kStats, false, 8192, kPhaseAny},
    {Msg::kDialRequest, false, 1, kPhaseRunning},  // beacon mode: which beacon
});
// clang-format on

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
