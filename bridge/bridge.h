// vault-bridge: entry points of its three processes (docs/architecture.md).
#pragma once

namespace ct::bridge {

int parent_main(int argc, char** argv);  // bridge/parent.cc
int tls_main();                          // bridge/tls_proc.cc
int forward_main();                      // bridge/forward_proc.cc

}  // namespace ct::bridge
