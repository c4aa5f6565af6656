// cloudtaser-beacon: the relay of beacon mode (docs/beacon.md). Three
// processes: the parent re-executes this binary with --child=tls and starts
// cloudtaser-beacon-forward (beacon/forward_main.cc, no OpenSSL) with
// --child=forward.
#include "beacon/beacon.h"
#include "beacon/procs.h"
#include "shared/proc/forward_exe.h"

int main(int argc, char** argv) {
  return ct::daemon_exe_main(argc, argv,
                             {"cloudtaser-beacon", ct::beacon::parent_main, ct::beacon::tls_main,
                              ct::beacon::tls_sandbox, &ct::beacon::kProcs});
}
