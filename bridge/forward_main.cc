// vault-bridge-forward: the bridge's forwarding process as an executable of
// its own, which links no OpenSSL (shared/proc/forward_exe.h). vault-bridge starts
// it; it is never run by hand.
#include "bridge/bridge.h"
#include "shared/proc/forward_exe.h"

int main(int argc, char** argv) {
  return ct::forward_exe_main(
      argc, argv, {"vault-bridge", ct::bridge::forward_main, ct::bridge::forward_sandbox});
}
