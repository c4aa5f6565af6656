// cloudtaser-broker: entry points of its three processes (docs/architecture.md).
#pragma once

#include "shared/os/sandbox.h"

namespace ct::broker {

int parent_main(int argc, char** argv);  // broker/parent.cc
int tls_main();                          // broker/tls_proc.cc
// The forwarding process: linked into cloudtaser-broker-forward
// (broker/forward_*.cc), never into the daemon, which links OpenSSL.
int forward_main();

// Each process's sandbox (its allowlist sits beside its main), for
// --sandbox-policy and --sandbox-probe.
SandboxSpec tls_sandbox();
SandboxSpec forward_sandbox(uint16_t upstream_port);  // broker/forward_proc.cc

}  // namespace ct::broker
