// The main() of a daemon's forwarding executable, <daemon>-forward: the
// forwarding process as a program of its own, linked against libshared.a,
// libseccomp and libcap-ng only, so that the process holding the plaintext
// local sockets never maps OpenSSL (docs/privsep.md). The daemon's parent
// finds it (open_forward_exe) and starts it (spawn_child); run by hand it
// answers --version and the sandbox test hooks only.
#pragma once

#include <cstdint>

#include "shared/os/sandbox.h"
#include "shared/proc/process_spec.h"

namespace ct {

struct ForwardExe {
  const char* daemon;                              // "vault-bridge"
  int (*process_main)();                           // the forwarding process
  SandboxSpec (*sandbox)(uint16_t upstream_port);  // its sandbox, for the hooks
};

// --child=forward --daemon-version=V: the forwarding process (is_child_argv
// refuses another version). --sandbox-policy forward and --sandbox-probe
// forward CALL: docs/sandbox.md's test hooks, with the policy built for an
// upstream on port 8200. --version. Anything else: one line saying this is an
// internal helper of its daemon, and exit 2.
int forward_exe_main(int argc, char** argv, const ForwardExe& exe);

// The daemon's own executable: the parent, and (re-executed) its TLS process.
struct DaemonExe {
  const char* daemon;  // "vault-bridge"
  int (*parent_main)(int argc, char** argv);
  int (*tls_main)();             // the TLS process
  SandboxSpec (*tls_sandbox)();  // its sandbox, for the hooks
  const DaemonProcs* procs;      // its process table, for --ipc-policy
};

// --child=tls --daemon-version=V: the TLS process. --sandbox-policy tls|forward
// and --sandbox-probe tls|forward CALL: docs/sandbox.md's test hooks (the
// forwarding process's are answered by its own executable, exec'd here).
// --ipc-policy parent|tls|forward: that process's rows of the table (another
// name: one line on stderr, exit 2).
// Anything else: the parent.
int daemon_exe_main(int argc, char** argv, const DaemonExe& exe);

}  // namespace ct
