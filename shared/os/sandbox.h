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

// One comparison on a syscall argument: the call passes it when
// (arg[index] & mask) == value. `self` compares against this process's own
// pid or tid, taken when the filter is built (a signal may only go to
// ourselves; abort() needs exactly that).
enum class ArgSelf : uint8_t { kNo, kPid, kTid };
struct ArgCmp {
  unsigned index = 0;
  uint64_t mask = 0;
  uint64_t value = 0;
  ArgSelf self = ArgSelf::kNo;
};
constexpr ArgCmp arg_eq(unsigned i, uint64_t v) {
  return {i, ~uint64_t{0}, v, ArgSelf::kNo};
}
// The argument has none of `bits` set (a flags word that must not carry, say, O_ASYNC).
constexpr ArgCmp arg_without(unsigned i, uint64_t bits) {
  return {i, bits, 0, ArgSelf::kNo};
}
// Once `mask` is applied, the argument equals `v` (a type word with optional flag bits).
constexpr ArgCmp arg_masked(unsigned i, uint64_t mask, uint64_t v) {
  return {i, mask, v, ArgSelf::kNo};
}
constexpr ArgCmp arg_own_pid(unsigned i) {
  return {i, ~uint64_t{0}, 0, ArgSelf::kPid};
}
constexpr ArgCmp arg_own_tid(unsigned i) {
  return {i, ~uint64_t{0}, 0, ArgSelf::kTid};
}

// One allowed syscall, allowed only when every comparison in `args` holds
// (none: always). A call may appear on several lines (any line allows it).
// Every rule carries its reason, printed by `--sandbox-policy` and listed in
// docs/sandbox.md.
constexpr unsigned kMaxArgCmps = 3;  // socket: family, type and protocol, the most any rule needs
struct SyscallRule {
  const char* name;
  const char* reason;
  ArgCmp args[kMaxArgCmps] = {};
  unsigned nargs = 0;
};
template <typename... A>
constexpr SyscallRule allow_if(const char* name, const char* reason, A... cmps) {
  static_assert(sizeof...(A) >= 1 && sizeof...(A) <= kMaxArgCmps);
  return SyscallRule{name, reason, {cmps...}, sizeof...(A)};
}

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
  // setsockopt for the TCP options shared/os/net.cc and shared/stream/splice.cc set
  // (one list for every process that tunes sockets), and no other option.
  bool tcp_options = false;
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
// the named call (docs/sandbox.md lists them). Returning 0 means the call was
// allowed; 13 means it failed with the errno that Landlock or the filter
// gives; a forbidden call never returns (SIGSYS). Calls named `landlock-...`
// enter everything but the seccomp filter, to show what Landlock alone
// stops. CT_SANDBOX_PROBE_LANDLOCK_ABI=N (read here only) makes the probe
// use at most Landlock ABI N, as an older kernel would (0: none at all).
int sandbox_probe(const SandboxSpec& spec, const std::string& call);

// Whether the filter runs in log mode (sanitizer builds: ASan needs calls the
// production filter forbids; OpenSSH's sanitizer CI disables its sandbox too).
bool sandbox_log_mode();

}  // namespace ct
