#include "shared/proc/forward_exe.h"

#include <cstdio>
#include <cstring>

#include "shared/proc/spawn.h"

namespace ct {

int forward_exe_main(int argc, char** argv, const ForwardExe& exe) {
  constexpr int kExitUsage = 2;  // as DaemonParent's
  constexpr uint16_t kProbePort = 8200;
  if (is_child_argv(argc, argv, exe.daemon, role_name(ProcRole::kForward)))
    return exe.process_main();
  const auto named = argc >= 3 ? role_from_name(argv[2]) : std::nullopt;
  if (argc == 3 && std::strcmp(argv[1], "--sandbox-policy") == 0 && named == ProcRole::kForward) {
    sandbox_print_policy(exe.sandbox(kProbePort));
    return 0;
  }
  if (argc == 4 && std::strcmp(argv[1], "--sandbox-probe") == 0 && named == ProcRole::kForward)
    return sandbox_probe(exe.sandbox(kProbePort), argv[3]);
  if (argc == 2 && std::strcmp(argv[1], "--version") == 0) {
    std::printf("%s-forward %s\n", exe.daemon, CT_VERSION);
    return 0;
  }
  std::fprintf(stderr,
               "%s-forward: an internal helper of %s (its forwarding process), started by it; "
               "run %s instead\n",
               exe.daemon, exe.daemon, exe.daemon);
  return kExitUsage;
}

int daemon_exe_main(int argc, char** argv, const DaemonExe& exe) {
  if (is_child_argv(argc, argv, exe.daemon, role_name(ProcRole::kTls))) return exe.tls_main();
  if (argc >= 2 && std::strcmp(argv[1], "--ipc-policy") == 0) {
    const auto role = argc == 3 ? role_from_name(argv[2]) : std::nullopt;
    if (!role) {
      std::fprintf(stderr, "%s: --ipc-policy takes one process: parent, tls or forward\n",
                   exe.daemon);
      return 2;  // as DaemonParent's usage errors
    }
    ipc_print_policy(*exe.procs, *role);
    return 0;
  }
  const bool hook = (argc == 3 && std::strcmp(argv[1], "--sandbox-policy") == 0) ||
                    (argc == 4 && std::strcmp(argv[1], "--sandbox-probe") == 0);
  const auto named = hook ? role_from_name(argv[2]) : std::nullopt;
  if (named == ProcRole::kForward) return exec_forward_exe(exe.daemon, argv);
  if (named == ProcRole::kTls) {
    if (argc == 4) return sandbox_probe(exe.tls_sandbox(), argv[3]);
    sandbox_print_policy(exe.tls_sandbox());
    return 0;
  }
  return exe.parent_main(argc, argv);
}

}  // namespace ct
