// cloudtaser-broker: entry points of its three processes (docs/architecture.md).
#pragma once

namespace ct::broker {

int parent_main(int argc, char** argv);  // broker/parent.cc
int tls_main();                          // broker/tls_proc.cc
int forward_main();                      // broker/forward_proc.cc

}  // namespace ct::broker
