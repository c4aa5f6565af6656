// vault-bridge's processes, declared once (shared/proc/process_spec.h): who
// may send each process what, when, and in which size. `vault-bridge
// --ipc-policy PROCESS` prints a process's rows; docs/privsep.md explains them.
#pragma once

#include "shared/ipc/channel.h"
#include "shared/proc/process_spec.h"
#include "shared/wire/limits.h"

namespace ct::bridge {

inline constexpr uint32_t kMaxMaterial = static_cast<uint32_t>(limits::kMaxIpcMessage);

// The TLS process, from the parent. DIALED / DIAL_FAILED answer its
// DIAL_REQUEST (the process checks that one is outstanding).
inline constexpr MsgRule kTlsFromParent[] = {
    {Msg::kSettings, false, 4096, kPhaseSetup, kOnce | kOpens},
    {Msg::kMaterial, false, kMaxMaterial, kPhaseRunning},  // again at every reload
    {Msg::kDialed, true, 0, kPhaseRunning},
    {Msg::kDialFailed, false, 1024, kPhaseRunning},
    {Msg::kPeerRing, true, 0, kPhaseRunning},  // again whenever the forwarding process restarts
    {Msg::kPeerChannel, true, 0, kPhaseRunning, 0, Msg::kPeerRing},
    {Msg::kDrain, false, 0, kPhaseRunning, kOnce},
    {Msg::kPing, false, 8, kPhaseAny},
};

// The forwarding process, from the parent.
inline constexpr MsgRule kForwardFromParent[] = {
    {Msg::kSettings, false, 4096, kPhaseSetup, kOnce | kOpens},
    {Msg::kPeerRing, true, 0, kPhaseRunning},
    {Msg::kPeerChannel, true, 0, kPhaseRunning, 0, Msg::kPeerRing},
    {Msg::kDrain, false, 0, kPhaseRunning, kOnce},
    {Msg::kPing, false, 8, kPhaseAny},
};

// The parent, from the TLS process: READY after every MATERIAL it applied,
// MATERIAL_ERROR instead when it refused one; STATUS and DIAL_REQUEST need
// material, so come after the first READY.
inline constexpr MsgRule kParentFromTls[] = {
    {Msg::kReady, false, 0, kPhaseAny, kOpens},
    {Msg::kMaterialError, false, 1024, kPhaseAny},
    {Msg::kStatus, false, 1024, kPhaseRunning},
    {Msg::kDialRequest, false, 0, kPhaseRunning},  // one at a time (checked by the parent)
    {Msg::kPong, false, 16, kPhaseAny},
};

// The parent, from the forwarding process: READY once its settings are applied.
inline constexpr MsgRule kParentFromForward[] = {
    {Msg::kReady, false, 0, kPhaseSetup, kOnce | kOpens},
    {Msg::kPong, false, 16, kPhaseAny},
};

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
