// cloudtaser-broker: the in-cluster end of the reverse-connect tunnel.
// One binary, three processes: the parent re-executes itself with --child=tls
// and --child=forward (see docs/architecture.md for the process table).
#include <cstring>

#include "broker/broker.h"

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--child=tls") == 0) return ct::broker::tls_main();
  if (argc == 2 && std::strcmp(argv[1], "--child=forward") == 0) return ct::broker::forward_main();
  return ct::broker::parent_main(argc, argv);
}
