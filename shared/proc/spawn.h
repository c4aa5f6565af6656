// Process plumbing: exec of a fresh binary for each child (our own for the TLS
// process, <daemon>-forward for the forwarding process: a fresh address space
// that inherited nothing from the parent's heap), the child's side of the
// control channel.
#pragma once

#include <sys/types.h>

#include <string>

#include "shared/base/result.h"
#include "shared/base/unique_fd.h"

namespace ct {

// The control channel is always fd 3 in a child.
inline constexpr int kChildControlFd = 3;

// What a parent puts after a child's role flag: "--daemon-version=" and its
// own CT_VERSION. A child built from another version (a forward executable
// left behind by another package) refuses to run with kExitVersionMismatch,
// and the parent stops: restarting the same file cannot help.
inline constexpr char kDaemonVersionFlag[] = "--daemon-version=";
inline constexpr int kExitVersionMismatch = 78;  // sysexits' EX_CONFIG

// /proc/self/exe opened once at start, so restarts exec the same binary even
// after a package upgrade replaced the file.
Result<UniqueFd> open_self_exe();
// The daemon's forwarding executable, "<daemon>-forward", which links no
// OpenSSL. Looked for beside the real path of the running daemon (symlinks
// resolved), then in <that directory>/../libexec/cloudtaser/ (the packages'
// /usr/bin/vault-bridge and /usr/libexec/cloudtaser/vault-bridge-forward).
// Opened once, like open_self_exe, so that every restart execs the file the
// daemon started with. `path` is the file found; on failure the error is one
// line naming each path tried and why it was not used.
struct ForwardExeFile {
  UniqueFd fd;
  std::string path;
};
Result<ForwardExeFile> open_forward_exe(const std::string& daemon);
// Replaces the process with the forwarding executable, same argv but argv[0]
// (the daemons' --sandbox-policy/--sandbox-probe hooks for the forwarding
// process, so that they test the real binary). Returns only on failure, with
// the exit code for main() after printing one line.
int exec_forward_exe(const std::string& daemon, char** argv);
// fork + exec of `exe_fd` with argv {argv0, role_flag, --daemon-version=...}
// (role_flag e.g. "--child=tls"), `control` as fd 3, every other fd but 0-2
// closed, signals unblocked, and SIGKILL on parent death.
pid_t spawn_child(int exe_fd, const std::string& argv0, const std::string& role_flag,
                  UniqueFd control);
// In a child's main(): whether argv asks for `process` ("--child=tls"). A
// child started with another version's --daemon-version (or none) logs one
// line and exits kExitVersionMismatch.
bool is_child_argv(int argc, char** argv, const char* daemon, const char* process);
// In a child: checks that fd 3 is our control channel and closes every fd
// above it. Exits 70 when started by hand without one.
UniqueFd child_take_control();
}  // namespace ct
