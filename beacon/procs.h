// cloudtaser-beacon's processes, declared once (shared/proc/process_spec.h):
// who may send each process what, when, and in which size.
// `cloudtaser-beacon --ipc-policy PROCESS` prints a process's rows.
//
// The skeleton's three processes: the parent, the TLS process (the outer
// TLS, the preamble, pairing and relaying) and a forwarding process that
// holds no key and serves /metrics, /healthz and /readyz from the TLS
// process's figures, so HTTP is never parsed where the key lives
// (docs/beacon.md §4). The data channel the skeleton joins them with carries
// nothing in the beacon.
#pragma once

#include "beacon/metrics.h"
#include "beacon/options.h"
#include "shared/ipc/channel.h"
#include "shared/proc/process_spec.h"
#include "shared/wire/limits.h"

namespace ct::beacon {

inline constexpr uint32_t kMaxMaterial = static_cast<uint32_t>(limits::kMaxIpcMessage);

// clang-format off
// The TLS process, from the parent, beyond every child's rows. LISTENER: the
// --listen socket, with the limits set by flag (beacon/options.h).
inline constexpr auto kTlsFromParent = table_of(kChildRules, {
    {Msg::kMaterial, false, kMaxMaterial, kPhaseRunning},  // again at every reload
    {Msg::kListener, true, kOptionsSize, kPhaseRunning, kOnce},
});

// The forwarding process, from the parent: METRICS_LISTENER (--metrics-listen,
// once) and the TLS process's figures, which it serves.
inline constexpr auto kForwardFromParent = table_of(kChildRules, {
    {Msg::kMetricsListener, true, 0, kPhaseRunning, kOnce},
    {Msg::kStats, false, kMaxStatsSize, kPhaseRunning},
});

// The parent, from the TLS process: also its figures, once a second when
// they changed.
inline constexpr auto kParentFromTls = table_of(kFromTlsRules, {
    {Msg::kStats, false, kMaxStatsSize, kPhaseAny},
});
// clang-format on

inline constexpr DaemonProcs kProcs = {
    "cloudtaser-beacon",
    {ProcRole::kParent, {}, kParentFromTls, kParentFromForward, {false, 0}, nullptr},
    {ProcRole::kTls,
     kTlsFromParent,
     {},
     {},
     {false, limits::kLocalStreamWindow},
     "cloudtaser-beacon tls"},
    {ProcRole::kForward,
     kForwardFromParent,
     {},
     {},
     {true, limits::kLocalStreamWindow},
     "cloudtaser-beacon forward"},
};

}  // namespace ct::beacon
