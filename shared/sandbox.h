// The sandbox every child process enters before it reads a byte from the
// network (docs/sandbox.md): an unprivileged user when started as root, no
// capabilities, no_new_privs, rlimits, Landlock where the kernel has it, and
// a seccomp allowlist whose default action kills the process. Each process's
// allowlist is written beside its main; this file holds the mechanism and the
// part every process shares (memory, signals, the loop, exit).
//
// Order (catalog S-08): user and capabilities, then no_new_privs, then
// Landlock, then the seccomp filter. Any failure is fatal: the process exits
// rather than run unconfined.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <span>
#include <string>

namespace ct {

// One allowed syscall. `arg0_eq`/`arg0_mask`: when `arg_filter` is set the call
// is allowed only if (arg[arg_index] & mask) == value. Every rule carries its
// reason, printed by `--sandbox-policy` and listed in docs/sandbox.md.
struct SyscallRule {
  const char* name;
  const char* reason;
  bool arg_filter = false;
  unsigned arg_index = 0;
  uint64_t mask = 0;
  uint64_t value = 0;
};

struct SandboxSpec {
  const char* process;                    // "broker tls", for messages
  std::span<const SyscallRule> syscalls;  // beyond the common set
  uid_t uid = 0;                          // switch to this user when running as root
  gid_t gid = 0;
  bool drop_user = false;
  // Landlock: no filesystem access at all; when `connect_port` is nonzero the
  // process may connect (TCP) to that port only and bind nothing; when it is
  // zero it may neither connect nor bind.
  bool landlock_net = true;
  uint16_t connect_port = 0;
  uint64_t max_fds = 0;  // RLIMIT_NOFILE (0: leave as is)
  // The parent's pid (0: unknown). The kernel clears PR_SET_PDEATHSIG at the
  // user switch: it is armed again, and the parent checked to be alive.
  pid_t parent = 0;
};

// Enters the sandbox or exits the process (status 70) saying why.
void sandbox_enter(const SandboxSpec& spec);

// The shared allowlist, for docs and the policy printer.
std::span<const SyscallRule> sandbox_common_rules();
// Prints the complete policy of a process (common + its own), one syscall a line.
void sandbox_print_policy(const SandboxSpec& spec);

// Test hook used by `--sandbox-probe`: enters `spec`'s sandbox, then makes
// the named forbidden call. Returning means the call was allowed (exit 0).
int sandbox_probe(const SandboxSpec& spec, const std::string& call);

// Whether the filter runs in log mode (sanitizer builds: ASan needs calls the
// production filter forbids; OpenSSH's sanitizer CI disables its sandbox too).
bool sandbox_log_mode();

}  // namespace ct
