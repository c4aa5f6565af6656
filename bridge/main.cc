// vault-bridge: runs on the OpenBao host, dials OUT to cloudtaser-broker and
// carries each wrapper stream to --vault-addr. It opens no listening port.
// One binary, three processes (docs/architecture.md).
#include <cstring>

#include "bridge/bridge.h"

int main(int argc, char** argv) {
  if (argc == 2 && std::strcmp(argv[1], "--child=tls") == 0) return ct::bridge::tls_main();
  if (argc == 2 && std::strcmp(argv[1], "--child=forward") == 0) return ct::bridge::forward_main();
  return ct::bridge::parent_main(argc, argv);
}
