// cloudtaser-beacon-forward: the beacon's forwarding process (its /metrics)
// as an executable of its own, which links no OpenSSL
// (shared/proc/forward_exe.h). cloudtaser-beacon starts it.
#include "beacon/beacon.h"
#include "shared/proc/forward_exe.h"

int main(int argc, char** argv) {
  return ct::forward_exe_main(
      argc, argv, {"cloudtaser-beacon", ct::beacon::forward_main, ct::beacon::forward_sandbox});
}
