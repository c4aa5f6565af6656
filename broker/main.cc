// cloudtaser-broker: the in-cluster end of the reverse-connect tunnel.
// Three processes: the parent re-executes this binary with --child=tls and
// starts cloudtaser-broker-forward (broker/forward_main.cc, no OpenSSL) with
// --child=forward (see docs/architecture.md for the process table). The test
// hooks (docs/sandbox.md) are in shared/proc/forward_exe.cc.
#include "broker/broker.h"
#include "broker/procs.h"
#include "shared/proc/forward_exe.h"

int main(int argc, char** argv) {
  return ct::daemon_exe_main(argc, argv,
                             {"cloudtaser-broker", ct::broker::parent_main, ct::broker::tls_main,
                              ct::broker::tls_sandbox, &ct::broker::kProcs});
}
