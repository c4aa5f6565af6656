// cloudtaser-beacon: entry points of its three processes (beacon/procs.h,
// docs/beacon.md §4).
#pragma once

#include <cstdint>

#include "shared/os/sandbox.h"

namespace ct::beacon {

int parent_main(int argc, char** argv);  // beacon/parent.cc
int tls_main();                          // beacon/tls_proc.cc
// The forwarding process (/metrics): linked into cloudtaser-beacon-forward
// (beacon/forward_*.cc), never into the daemon, which links OpenSSL.
int forward_main();

// Each process's sandbox (its allowlist sits beside its main), for
// --sandbox-policy and --sandbox-probe.
SandboxSpec tls_sandbox();
SandboxSpec forward_sandbox(uint16_t upstream_port);  // beacon/forward_proc.cc

}  // namespace ct::beacon
