// cloudtaser-broker-forward: the broker's forwarding process as an executable
// of its own, which links no OpenSSL (shared/proc/forward_exe.h). cloudtaser-broker
// starts it; it is never run by hand.
#include "broker/broker.h"
#include "shared/proc/forward_exe.h"

int main(int argc, char** argv) {
  return ct::forward_exe_main(
      argc, argv, {"cloudtaser-broker", ct::broker::forward_main, ct::broker::forward_sandbox});
}
