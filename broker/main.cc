// cloudtaser-broker: the in-cluster end of the reverse-connect tunnel.
// Three processes: the parent re-executes this binary with --child=tls and
// starts cloudtaser-broker-forward (broker/forward_main.cc, no OpenSSL) with
// --child=forward (see docs/architecture.md for the process table).
#include <cstring>

#include "broker/broker.h"
#include "shared/proc.h"

int main(int argc, char** argv) {
  if (ct::is_child_argv(argc, argv, "cloudtaser-broker", "tls")) return ct::broker::tls_main();
  // Test hooks, documented in docs/sandbox.md: print a process's seccomp
  // policy, or enter it and make one forbidden call (the caller expects SIGSYS).
  // The forwarding process's are answered by its own executable.
  const bool hook = (argc == 3 && std::strcmp(argv[1], "--sandbox-policy") == 0) ||
                    (argc == 4 && std::strcmp(argv[1], "--sandbox-probe") == 0);
  if (hook && std::strcmp(argv[2], "forward") == 0)
    return ct::exec_forward_exe("cloudtaser-broker", argv);
  if (hook && std::strcmp(argv[2], "tls") == 0) {
    if (argc == 4) return ct::sandbox_probe(ct::broker::tls_sandbox(), argv[3]);
    ct::sandbox_print_policy(ct::broker::tls_sandbox());
    return 0;
  }
  return ct::broker::parent_main(argc, argv);
}
