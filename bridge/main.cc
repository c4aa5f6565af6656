// vault-bridge: runs on the OpenBao host, dials OUT to cloudtaser-broker and
// carries each wrapper stream to --vault-addr. It opens no listening port.
// One binary, three processes (docs/architecture.md).
#include <cstring>

#include "bridge/bridge.h"

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--child=tls") == 0) return ct::bridge::tls_main();
  if (argc == 2 && std::strcmp(argv[1], "--child=forward") == 0) return ct::bridge::forward_main();
  // Test hooks, documented in docs/sandbox.md: print a process's seccomp
  // policy, or enter it and make one forbidden call (the caller expects SIGSYS).
  if (argc == 3 && std::strcmp(argv[1], "--sandbox-policy") == 0) {
    const bool tls = std::strcmp(argv[2], "tls") == 0;
    ct::sandbox_print_policy(tls ? ct::bridge::tls_sandbox() : ct::bridge::forward_sandbox(8200));
    return 0;
  }
  if (argc == 4 && std::strcmp(argv[1], "--sandbox-probe") == 0) {
    const bool tls = std::strcmp(argv[2], "tls") == 0;
    return ct::sandbox_probe(tls ? ct::bridge::tls_sandbox() : ct::bridge::forward_sandbox(8200),
                             argv[3]);
  }
  return ct::bridge::parent_main(argc, argv);
}
