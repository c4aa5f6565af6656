// vault-bridge: runs on the OpenBao host, dials OUT to cloudtaser-broker and
// carries each wrapper stream to --vault-addr. It opens no listening port.
// Three processes: the parent re-executes this binary with --child=tls and
// starts vault-bridge-forward (bridge/forward_main.cc, no OpenSSL) with
// --child=forward (docs/architecture.md). The test hooks (docs/sandbox.md) are
// in shared/proc/forward_exe.cc.
#include "bridge/bridge.h"
#include "bridge/procs.h"
#include "shared/proc/forward_exe.h"

int main(int argc, char** argv) {
  return ct::daemon_exe_main(argc, argv,
                             {"vault-bridge", ct::bridge::parent_main, ct::bridge::tls_main,
                              ct::bridge::tls_sandbox, &ct::bridge::kProcs});
}
