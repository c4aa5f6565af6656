// vault-bridge: runs on the OpenBao host, dials OUT to cloudtaser-broker and
// carries each wrapper stream to --vault-addr. It opens no listening port.
// Three processes: the parent re-executes this binary with --child=tls and
// starts vault-bridge-forward (bridge/forward_main.cc, no OpenSSL) with
// --child=forward (docs/architecture.md).
#include <cstring>

#include "bridge/bridge.h"
#include "shared/proc.h"

int main(int argc, char** argv) {
  if (ct::is_child_argv(argc, argv, "vault-bridge", "tls")) return ct::bridge::tls_main();
  // Test hooks, documented in docs/sandbox.md: print a process's seccomp
  // policy, or enter it and make one forbidden call (the caller expects SIGSYS).
  // The forwarding process's are answered by its own executable.
  const bool hook = (argc == 3 && std::strcmp(argv[1], "--sandbox-policy") == 0) ||
                    (argc == 4 && std::strcmp(argv[1], "--sandbox-probe") == 0);
  if (hook && std::strcmp(argv[2], "forward") == 0)
    return ct::exec_forward_exe("vault-bridge", argv);
  if (hook && std::strcmp(argv[2], "tls") == 0) {
    if (argc == 4) return ct::sandbox_probe(ct::bridge::tls_sandbox(), argv[3]);
    ct::sandbox_print_policy(ct::bridge::tls_sandbox());
    return 0;
  }
  return ct::bridge::parent_main(argc, argv);
}
