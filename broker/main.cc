// cloudtaser-broker: the in-cluster end of the reverse-connect tunnel.
// One binary, three processes: the parent re-executes itself with --child=tls
// and --child=forward (see docs/architecture.md for the process table).
#include <cstring>

#include "broker/broker.h"

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--child=tls") == 0) return ct::broker::tls_main();
  if (argc == 2 && std::strcmp(argv[1], "--child=forward") == 0) return ct::broker::forward_main();
  // Test hooks, documented in docs/sandbox.md: print a process's seccomp
  // policy, or enter it and make one forbidden call (the caller expects SIGSYS).
  if (argc == 3 && std::strcmp(argv[1], "--sandbox-policy") == 0) {
    const bool tls = std::strcmp(argv[2], "tls") == 0;
    ct::sandbox_print_policy(tls ? ct::broker::tls_sandbox() : ct::broker::forward_sandbox(8200));
    return 0;
  }
  if (argc == 4 && std::strcmp(argv[1], "--sandbox-probe") == 0) {
    const bool tls = std::strcmp(argv[2], "tls") == 0;
    return ct::sandbox_probe(tls ? ct::broker::tls_sandbox() : ct::broker::forward_sandbox(8200),
                             argv[3]);
  }
  return ct::broker::parent_main(argc, argv);
}
