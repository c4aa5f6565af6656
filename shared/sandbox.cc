#include "shared/sandbox.h"

#include <arpa/inet.h>
#include <cap-ng.h>
#include <fcntl.h>
#include <linux/landlock.h>
#include <netinet/in.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace ct {

namespace {

// What every process of both daemons needs once it runs its loop. Memory
// calls are allowed without PROT_EXEC only: nothing here ever needs new code.
constexpr uint64_t kExec = PROT_EXEC;
const SyscallRule kCommon[] = {
    {"read", "sockets, socketpairs, signalfd"},
    {"write", "sockets, socketpairs, the log line to stderr"},
    {"writev", "stderr from libc's own abort message"},
    {"close", "every fd we are done with"},
    {"epoll_wait", "the loop"},
    {"epoll_pwait", "the loop (libc may use the p-variant)"},
    {"epoll_ctl", "registering fds with the loop"},
    {"recvmsg", "control channel messages with fds"},
    {"sendmsg", "control channel messages; a stream's frames gathered into one write"},
    {"recvfrom", "recv() on sockets"},
    {"sendto", "send() on sockets"},
    {"fcntl", "O_NONBLOCK and F_DUPFD_CLOEXEC on fds we own"},
    {"clock_gettime", "deadlines (vDSO fallback)"},
    {"gettimeofday", "log timestamps (vDSO fallback)"},
    {"getpid", "logs, abort()"},
    {"gettid", "abort() signals its own thread"},
    {"getrandom", "instance ids; OpenSSL's DRBG reseeds (TLS processes)"},
    {"futex", "libc and libstdc++ internal locks"},
    {"brk", "malloc"},
    {"mmap", "malloc; the data channel rings (MAP_SHARED); never executable", true, 2, kExec, 0},
    {"mprotect", "malloc arenas, never executable", true, 2, kExec, 0},
    {"munmap", "malloc"},
    {"mremap", "realloc of large blocks"},
    {"madvise", "malloc returning memory (MADV_DONTNEED)", true, 2, ~uint64_t{0}, MADV_DONTNEED},
    {"madvise", "malloc returning memory (MADV_FREE)", true, 2, ~uint64_t{0}, MADV_FREE},
    {"rt_sigprocmask", "abort()"},
    {"rt_sigaction", "abort() resets the SIGABRT handler", true, 0, ~uint64_t{0}, SIGABRT},
    {"tgkill", "abort() raises SIGABRT in this process"},
    {"rt_sigreturn", "return from a signal"},
    {"restart_syscall", "a call interrupted by SIGSTOP/SIGCONT"},
    {"exit", "thread exit"},
    {"exit_group", "process exit"},
};

[[noreturn]] void die(const char* process, const char* what, int err) {
  if (err != 0)
    std::fprintf(stderr, "sandbox: %s: %s: %s; refusing to run unconfined\n", process, what,
                 std::strerror(err));
  else
    std::fprintf(stderr, "sandbox: %s: %s; refusing to run unconfined\n", process, what);
  std::_Exit(70);
}

void drop_privileges(const SandboxSpec& s) {
  prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
  capng_clear(CAPNG_SELECT_BOTH);
  if (s.drop_user && geteuid() == 0) {
    // setgroups, setresgid, setresuid and the bounding set, in that order.
    const int rc =
        capng_change_id(static_cast<int>(s.uid), static_cast<int>(s.gid),
                        static_cast<capng_flags_t>(CAPNG_DROP_SUPP_GRP | CAPNG_CLEAR_BOUNDING));
    if (rc != 0) die(s.process, "cannot switch user (capng_change_id)", errno);
  } else {
    // Unprivileged already (systemd's User=, a pod's runAsUser): drop what
    // capabilities there are; with none, make no capset() call at all, which
    // a service manager's own filter may forbid.
    capng_get_caps_process();
    if (capng_have_capabilities(CAPNG_SELECT_CAPS) != CAPNG_NONE) {
      capng_clear(CAPNG_SELECT_BOTH);
      if (capng_apply(CAPNG_SELECT_CAPS) != 0) die(s.process, "cannot drop capabilities", errno);
    }
  }
  capng_get_caps_process();
  if (capng_have_capabilities(CAPNG_SELECT_CAPS) != CAPNG_NONE)
    die(s.process, "capabilities still present after dropping them", 0);
  if (s.drop_user && (getuid() == 0 || geteuid() == 0 || getgid() == 0 || getegid() == 0))
    die(s.process, "still root after the user switch", 0);
}

void set_limits(const SandboxSpec& s) {
  rlimit zero{0, 0};
  // No core files: the TLS process holds the private key.
  if (setrlimit(RLIMIT_CORE, &zero) != 0) die(s.process, "setrlimit(RLIMIT_CORE)", errno);
  // No new processes (fork is also outside every allowlist).
  if (getuid() != 0 && setrlimit(RLIMIT_NPROC, &zero) != 0)
    die(s.process, "setrlimit(RLIMIT_NPROC)", errno);
  if (s.max_fds != 0) {
    rlimit fds{s.max_fds, s.max_fds};
    rlimit cur{};
    getrlimit(RLIMIT_NOFILE, &cur);
    if (cur.rlim_max < fds.rlim_max) fds.rlim_cur = fds.rlim_max = cur.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &fds) != 0) die(s.process, "setrlimit(RLIMIT_NOFILE)", errno);
  }
}

// Landlock, declared here because Debian 12's headers predate network rules.
struct LlRulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
};
struct LlNetPortAttr {
  uint64_t allowed_access;
  uint64_t port;
} __attribute__((packed));
constexpr uint64_t kLlNetBindTcp = 1ull << 0;
constexpr uint64_t kLlNetConnectTcp = 1ull << 1;
constexpr int kLlRuleNetPort = 2;

void landlock(const SandboxSpec& s) {
  const long abi =
      syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  if (abi < 1) return;  // no Landlock in this kernel: seccomp still applies
  // Every filesystem right this ABI knows is handled, and none is granted.
  uint64_t fs = (1ull << 13) - 1;  // ABI 1: EXECUTE .. MAKE_SYM
  if (abi >= 2) fs |= 1ull << 13;  // REFER
  if (abi >= 3) fs |= 1ull << 14;  // TRUNCATE
  if (abi >= 5) fs |= 1ull << 15;  // IOCTL_DEV
  LlRulesetAttr attr{fs, 0};
  size_t attr_size = sizeof(uint64_t);
  if (abi >= 4 && s.landlock_net) {
    attr.handled_access_net = kLlNetBindTcp | kLlNetConnectTcp;
    attr_size = sizeof attr;
  }
  const long fd = syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
  if (fd < 0) die(s.process, "landlock_create_ruleset", errno);
  if (attr.handled_access_net != 0 && s.connect_port != 0) {
    LlNetPortAttr port{kLlNetConnectTcp, s.connect_port};
    if (syscall(SYS_landlock_add_rule, fd, kLlRuleNetPort, &port, 0) != 0)
      die(s.process, "landlock_add_rule", errno);
  }
  if (syscall(SYS_landlock_restrict_self, fd, 0) != 0)
    die(s.process, "landlock_restrict_self", errno);
  close(static_cast<int>(fd));
}

bool add_rule(scmp_filter_ctx ctx, const SyscallRule& r) {
  const int nr = seccomp_syscall_resolve_name(r.name);
  if (nr == __NR_SCMP_ERROR) return true;  // not a syscall on this architecture
  int rc;
  if (r.arg_filter)
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 1,
                          SCMP_CMP(r.arg_index, SCMP_CMP_MASKED_EQ, r.mask, r.value));
  else
    rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
  return rc == 0;
}

void seccomp(const SandboxSpec& s) {
  const uint32_t deflt = sandbox_log_mode() ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS;
  scmp_filter_ctx ctx = seccomp_init(deflt);
  if (ctx == nullptr) die(s.process, "seccomp_init", 0);
  // Another architecture's entry (i386 int 0x80) kills; libseccomp also
  // rejects x32 numbers on x86_64 with this action.
  if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0)
    die(s.process, "seccomp bad-arch action", 0);
  for (const SyscallRule& r : kCommon)
    if (!add_rule(ctx, r)) die(s.process, r.name, 0);
  for (const SyscallRule& r : s.syscalls)
    if (!add_rule(ctx, r)) die(s.process, r.name, 0);
  const int rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0) die(s.process, "seccomp_load", -rc);
}

}  // namespace

bool sandbox_log_mode() {
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  return true;
#else
  return false;
#endif
}

std::span<const SyscallRule> sandbox_common_rules() {
  return kCommon;
}

void sandbox_enter(const SandboxSpec& s) {
  drop_privileges(s);
  if (s.parent != 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) die(s.process, "PR_SET_PDEATHSIG", errno);
    if (getppid() != s.parent) die(s.process, "the parent exited during start-up", 0);
  }
  set_limits(s);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die(s.process, "PR_SET_NO_NEW_PRIVS", errno);
  // Not dumpable: no core, and other processes of the same user cannot ptrace it.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) die(s.process, "PR_SET_DUMPABLE", errno);
  landlock(s);
  seccomp(s);
}

void sandbox_print_policy(const SandboxSpec& s) {
  std::printf("# %s: seccomp allowlist (default: kill the process)\n", s.process);
  auto print = [](const SyscallRule& r) {
    if (r.arg_filter)
      std::printf("%-18s arg%u & %#llx == %#llx  # %s\n", r.name, r.arg_index,
                  static_cast<unsigned long long>(r.mask), static_cast<unsigned long long>(r.value),
                  r.reason);
    else
      std::printf("%-18s # %s\n", r.name, r.reason);
  };
  for (const SyscallRule& r : kCommon) print(r);
  for (const SyscallRule& r : s.syscalls) print(r);
}

int sandbox_probe(const SandboxSpec& spec, const std::string& call) {
  SandboxSpec s = spec;
  s.drop_user = false;  // the probe keeps its user; the filter is the same
  sandbox_enter(s);
  if (call == "none") return 0;
  if (call == "execve") {
    char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
    execve("/bin/true", argv, nullptr);
  } else if (call == "socket") {
    (void)socket(AF_INET, SOCK_STREAM, 0);
  } else if (call == "openat") {
    (void)open("/etc/hostname", O_RDONLY);
  } else if (call == "ptrace") {
    (void)ptrace(PTRACE_TRACEME, 0, nullptr, nullptr);
  } else if (call == "mprotect-exec") {
    void* p = mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    (void)mprotect(p, 4096, PROT_READ | PROT_EXEC);
  } else if (call == "mmap-exec") {
    (void)mmap(nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  } else if (call == "fork") {
    (void)syscall(SYS_fork);
  } else if (call == "connect") {
    (void)connect(0, nullptr, 0);
  } else if (call.rfind("connect-port:", 0) == 0) {
    // Landlock's answer for a TCP connect to 127.0.0.1:PORT: exit 13 when
    // Landlock refuses it (EACCES), 0 when it lets it through (to a refusal
    // or an answer from whatever listens there).
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(std::atoi(call.c_str() + 13)));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    const int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno == EACCES) return 13;
  } else if (call == "x32") {
    (void)syscall(0x40000000 | SYS_getpid);  // x32 ABI number for getpid
  } else if (call == "int80") {
#if defined(__x86_64__)
    long r;
    // i386 getpid (20) through the 32-bit entry: another architecture.
    asm volatile("int $0x80" : "=a"(r) : "a"(20) : "memory");
    (void)r;
#endif
  } else {
    std::fprintf(stderr, "unknown probe %s\n", call.c_str());
    return 2;
  }
  return 0;  // still alive: the call was allowed
}

}  // namespace ct
