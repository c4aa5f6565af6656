// vault-bridge's processes, declared once (shared/proc/process_spec.h): who
// may send each process what, when, and in which size. `vault-bridge
// --ipc-policy PROCESS` prints a process's rows; docs/privsep.md explains them.
#pragma once

#include "shared/ipc/channel.h"
#include "shared/proc/process_spec.h"
#include "shared/wire/limits.h"

namespace ct::bridge {

inline constexpr uint32_t kMaxMaterial = static_cast<uint32_t>(limits::kMaxIpcMessage);

// clang-format off
// The TLS process, from the parent, beyond every child's rows. DIALED /
// DIAL_FAILED answer its DIAL_REQUEST (the process checks that one is
// outstanding).
inline constexpr auto kTlsFromParent = table_of(kChildRules, {
    {Msg::kMaterial, false, kMaxMaterial, kPhaseRunning},  // again at every reload
    {Msg::kDialed, true, 0, kPhaseRunning},
    {Msg::kDialFailed, false, 1024, kPhaseRunning},
});

// The forwarding process takes only what every child takes.
inline constexpr auto kForwardFromParent = table_of(kChildRules);

// The parent, from the TLS process: also DIAL_REQUEST, once it has material,
// one at a time (checked by the parent).
inline constexpr auto kParentFromTls = table_of(kFromTlsRules, {
    {Msg::kDialRequest, false, 1, kPhaseRunning},  // beacon mode: which beacon
});
// clang-format on

inline constexpr DaemonProcs kProcs = {
    "vault-bridge",
    {ProcRole::kParent, {}, kParentFromTls, kParentFromForward, {false, 0}, nullptr},
    {ProcRole::kTls,
     kTlsFromParent,
     {},
     {},
     {true, limits::kLocalStreamWindow},
     "vault-bridge tls"},
    {ProcRole::kForward,
     kForwardFromParent,
     {},
     {},
     {false, limits::kLocalStreamWindow},
     "vault-bridge forward"},
};

}  // namespace ct::bridge
