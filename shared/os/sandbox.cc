#include "shared/os/sandbox.h"

#include <arpa/inet.h>
#include <cap-ng.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/landlock.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <seccomp.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "shared/base/check.h"
#include "shared/base/log.h"

extern "C" [[noreturn]] void __chk_fail();  // glibc, for the chk-fail probe

namespace ct {

namespace {

// What every process of both daemons needs once it runs its loop. Memory
// calls are allowed without PROT_EXEC only: nothing here ever needs new code.
constexpr uint64_t kExec = PROT_EXEC;
const SyscallRule kCommon[] = {
    {"read", "sockets, socketpairs, signalfd"},
    {"write", "sockets, socketpairs, the log line to stderr, the data channel's wake eventfd"},
    {"writev", "stderr from libc's own abort message"},
    {"close", "every fd we are done with"},
    {"epoll_wait", "the loop"},
    {"epoll_pwait", "the loop (libc may use the p-variant)"},
    {"epoll_ctl", "registering fds with the loop"},
    {"recvmsg", "control channel messages with fds"},
    {"sendmsg", "control channel messages; a stream's frames gathered into one write"},
    {"recvfrom", "recv() on sockets"},
    {"sendto", "send() on sockets"},
    // fcntl: only the commands the code uses. Not F_SETOWN/F_SETSIG or O_ASYNC,
    // which would aim SIGIO at a process of our choosing; not F_SETLK and
    // friends (no files), not F_DUPFD without CLOEXEC.
    allow_if("fcntl", "F_DUPFD_CLOEXEC: the spare fd for EMFILE; an fd queued on a channel",
             arg_eq(1, F_DUPFD_CLOEXEC)),
    allow_if("fcntl", "F_GETFL: set_nonblock() reads the flags it adds to", arg_eq(1, F_GETFL)),
    allow_if("fcntl", "F_SETFL: O_NONBLOCK on a handed fd; never O_ASYNC", arg_eq(1, F_SETFL),
             arg_without(2, O_ASYNC)),
    {"clock_gettime", "deadlines (vDSO fallback)"},
    {"gettimeofday", "log timestamps (vDSO fallback)"},
    {"getpid", "logs, abort()"},
    {"gettid", "abort() signals its own thread"},
    {"getrandom", "instance ids; OpenSSL's DRBG reseeds (TLS processes)"},
    {"futex", "libc and libstdc++ internal locks"},
    {"brk", "malloc"},
    allow_if("mmap", "malloc; the data channel rings (MAP_SHARED); never executable",
             arg_without(2, kExec)),
    allow_if("mprotect", "malloc arenas, never executable", arg_without(2, kExec)),
    {"munmap", "malloc"},
    {"mremap", "realloc of large blocks"},
    allow_if("madvise", "malloc returning memory (MADV_DONTNEED)", arg_eq(2, MADV_DONTNEED)),
    allow_if("madvise", "malloc returning memory (MADV_FREE)", arg_eq(2, MADV_FREE)),
    {"rt_sigprocmask", "abort()"},
    allow_if("rt_sigaction", "abort() resets the SIGABRT handler", arg_eq(0, SIGABRT)),
    // abort() is tgkill(getpid(), gettid(), SIGABRT) and nothing else here
    // sends a signal: no other target (another process of our user), no
    // other signal; kill() and tkill() are not allowed at all.
    allow_if("tgkill", "abort() raises SIGABRT in this process, and only there", arg_own_pid(0),
             arg_own_tid(1), arg_eq(2, SIGABRT)),
    {"rt_sigreturn", "return from a signal"},
    {"restart_syscall", "a call interrupted by SIGSTOP/SIGCONT"},
    {"exit", "thread exit"},
    {"exit_group", "process exit"},
};

// setsockopt, by level and option: what tune_stream_socket(),
// tune_link_socket() and a splice's abortive close set. Everything else is
// kernel code a compromised child has no business reaching: TCP_ULP (the
// kernel TLS upper layer, CVE-2023-0461), SO_ATTACH_FILTER (the BPF JIT),
// TCP_MD5SIG, IP_OPTIONS, TCP_REPAIR and the rest.
const SyscallRule kTcpOptions[] = {
    allow_if("setsockopt", "TCP_NODELAY: frames leave at once", arg_eq(1, IPPROTO_TCP),
             arg_eq(2, TCP_NODELAY)),
    allow_if("setsockopt", "SO_KEEPALIVE: a dead peer is noticed", arg_eq(1, SOL_SOCKET),
             arg_eq(2, SO_KEEPALIVE)),
    allow_if("setsockopt", "TCP_KEEPIDLE: when keepalive probes start", arg_eq(1, IPPROTO_TCP),
             arg_eq(2, TCP_KEEPIDLE)),
    allow_if("setsockopt", "TCP_KEEPINTVL: how often they go", arg_eq(1, IPPROTO_TCP),
             arg_eq(2, TCP_KEEPINTVL)),
    allow_if("setsockopt", "TCP_KEEPCNT: how many go unanswered", arg_eq(1, IPPROTO_TCP),
             arg_eq(2, TCP_KEEPCNT)),
    allow_if("setsockopt", "TCP_USER_TIMEOUT: unacknowledged data ends a link",
             arg_eq(1, IPPROTO_TCP), arg_eq(2, TCP_USER_TIMEOUT)),
    allow_if("setsockopt", "SO_LINGER 0: a stream reset becomes a TCP RST", arg_eq(1, SOL_SOCKET),
             arg_eq(2, SO_LINGER)),
    allow_if("setsockopt", "SO_SNDBUF: what a stalled reader leaves queued stays bounded",
             arg_eq(1, SOL_SOCKET), arg_eq(2, SO_SNDBUF)),
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

// Landlock, declared here because Debian 12's headers predate network rules
// and scopes.
struct LlRulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;  // ABI 4
  uint64_t scoped;              // ABI 6
};
struct LlNetPortAttr {
  uint64_t allowed_access;
  uint64_t port;
} __attribute__((packed));
constexpr uint64_t kLlNetBindTcp = 1ull << 0;
constexpr uint64_t kLlNetConnectTcp = 1ull << 1;
constexpr int kLlRuleNetPort = 2;
constexpr uint64_t kLlScopeAbstractUnix = 1ull << 0;
constexpr uint64_t kLlScopeSignal = 1ull << 1;
constexpr long kLlAbiNet = 4;     // TCP bind/connect rules
constexpr long kLlAbiScopes = 6;  // signal and abstract unix socket scoping

// The highest ABI the probe may use (-1: what the kernel has; 0: as if it
// had no Landlock). Set only by sandbox_probe, to show a daemon's behaviour
// on an older kernel.
long g_probe_abi_cap = -1;

void landlock(const SandboxSpec& s) {
  long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, LANDLOCK_CREATE_RULESET_VERSION);
  const char* why = abi < 1 ? std::strerror(errno) : "";
  if (g_probe_abi_cap >= 0 && abi > g_probe_abi_cap) {
    abi = g_probe_abi_cap;
    why = "capped to 0 for this probe";
  }
  if (abi < 1) {
    // Not fatal (docs/sandbox.md): seccomp already forbids every file call
    // and, but for the bridge's forwarding process, every socket call.
    log::msg(log::kWarn,
             "landlock unavailable (%s): fs rules no, net rules no, scopes no; seccomp alone "
             "confines this process",
             why);
    return;
  }
  // Every filesystem right this ABI knows is handled, and none is granted.
  uint64_t fs = (1ull << 13) - 1;  // ABI 1: EXECUTE .. MAKE_SYM
  if (abi >= 2) fs |= 1ull << 13;  // REFER
  if (abi >= 3) fs |= 1ull << 14;  // TRUNCATE
  if (abi >= 5) fs |= 1ull << 15;  // IOCTL_DEV
  LlRulesetAttr attr{fs, 0, 0};
  size_t attr_size = sizeof(uint64_t);
  const bool net = abi >= kLlAbiNet && s.landlock_net;
  if (net) {
    attr.handled_access_net = kLlNetBindTcp | kLlNetConnectTcp;
    attr_size = 2 * sizeof(uint64_t);
  }
  const bool scopes = abi >= kLlAbiScopes;
  if (scopes) {
    // No signal to a process outside this domain (seccomp already limits
    // signals to ourselves; this holds even if a rule there were wrong), and
    // no connect to an abstract unix socket made outside it (a D-Bus or
    // systemd socket of the host's network namespace).
    attr.scoped = kLlScopeSignal | kLlScopeAbstractUnix;
    attr_size = sizeof attr;
  }
  // One line at start says what this kernel gives, and what it does not.
  const char* net_txt = net ? "yes"
                        : abi < kLlAbiNet
                            ? "no (needs ABI 4: TCP connect and bind rest on seccomp alone)"
                            : "no (not asked for)";
  const char* scope_txt =
      scopes ? "yes" : "no (needs ABI 6: signals and abstract unix sockets rest on seccomp alone)";
  log::msg(net && scopes ? log::kInfo : log::kWarn,
           "landlock ABI %ld: fs rules, net rules %s, scopes %s", abi, net_txt, scope_txt);
  const long fd = syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
  if (fd < 0) die(s.process, "landlock_create_ruleset", errno);
  if (net && s.connect_port != 0) {
    LlNetPortAttr port{kLlNetConnectTcp, s.connect_port};
    if (syscall(SYS_landlock_add_rule, fd, kLlRuleNetPort, &port, 0) != 0)
      die(s.process, "landlock_add_rule", errno);
  }
  if (syscall(SYS_landlock_restrict_self, fd, 0) != 0)
    die(s.process, "landlock_restrict_self", errno);
  close(static_cast<int>(fd));
}

uint64_t arg_value(const ArgCmp& a) {
  switch (a.self) {
    case ArgSelf::kPid:
      return static_cast<uint64_t>(getpid());
    case ArgSelf::kTid:
      return static_cast<uint64_t>(gettid());
    case ArgSelf::kNo:
      break;
  }
  return a.value;
}

bool add_rule(scmp_filter_ctx ctx, const SyscallRule& r) {
  const int nr = seccomp_syscall_resolve_name(r.name);
  if (nr == __NR_SCMP_ERROR) return true;  // not a syscall on this architecture
  if (r.nargs > kMaxArgCmps) return false;
  scmp_arg_cmp cmps[kMaxArgCmps] = {};
  for (unsigned i = 0; i < r.nargs; i++)
    cmps[i] =
        scmp_arg_cmp{r.args[i].index, SCMP_CMP_MASKED_EQ, r.args[i].mask, arg_value(r.args[i])};
  return seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, nr, r.nargs, cmps) == 0;
}

void seccomp(const SandboxSpec& s) {
  const uint32_t deflt = sandbox_log_mode() ? SCMP_ACT_LOG : SCMP_ACT_KILL_PROCESS;
  scmp_filter_ctx ctx = seccomp_init(deflt);
  if (ctx == nullptr) die(s.process, "seccomp_init", 0);
  // Another architecture's entry (i386 int 0x80) kills; libseccomp also
  // rejects x32 numbers on x86_64 with this action.
  if (seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS) != 0)
    die(s.process, "seccomp bad-arch action", 0);
  // Any thread a library started behind our back gets the same filter.
  if (seccomp_attr_set(ctx, SCMP_FLTATR_CTL_TSYNC, 1) != 0) die(s.process, "seccomp TSYNC", 0);
  for (const SyscallRule& r : kCommon)
    if (!add_rule(ctx, r)) die(s.process, r.name, 0);
  for (const SyscallRule& r : s.syscalls)
    if (!add_rule(ctx, r)) die(s.process, r.name, 0);
  if (s.tcp_options)
    for (const SyscallRule& r : kTcpOptions)
      if (!add_rule(ctx, r)) die(s.process, r.name, 0);
  const int rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0) die(s.process, "seccomp_load", -rc);
}

// Landlock confines the calling thread only, and the tgkill rule names one
// tid: a second thread would escape both (seccomp's TSYNC covers the filter
// alone). The children are single-threaded (the resolver thread lives in the
// parent); this keeps it so. Without a readable /proc the count is skipped.
void check_single_thread(const SandboxSpec& s) {
  if (gettid() != getpid())
    die(s.process, "sandbox entered from a thread other than the main one", 0);
  const int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[512];
  const ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return;
  buf[n] = '\0';
  // Field 20 (num_threads); the fields after the ")" that ends the name.
  const char* p = std::strrchr(buf, ')');
  for (int field = 2; p != nullptr && field < 20; field++) p = std::strchr(p + 1, ' ');
  if (p != nullptr && std::atol(p + 1) > 1)
    die(s.process, "more than one thread: Landlock would confine only this one", 0);
}

void enter(const SandboxSpec& s, bool with_seccomp) {
  check_single_thread(s);
  drop_privileges(s);
  // The kernel clears PR_SET_PDEATHSIG at the user switch: arm it again, and
  // make sure the parent did not die in between (we would never be told).
  if (s.parent != 0) {
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) die(s.process, "PR_SET_PDEATHSIG", errno);
    if (getppid() != s.parent) die(s.process, "the parent exited during start-up", 0);
  }
  set_limits(s);
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die(s.process, "PR_SET_NO_NEW_PRIVS", errno);
  // Not dumpable: no core, and other processes of the same user cannot ptrace it.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) die(s.process, "PR_SET_DUMPABLE", errno);
  landlock(s);
  if (with_seccomp) seccomp(s);
}

std::string describe(const ArgCmp& a) {
  char buf[64];
  const auto v = static_cast<unsigned long long>(a.value);
  const auto m = static_cast<unsigned long long>(a.mask);
  if (a.self == ArgSelf::kPid)
    std::snprintf(buf, sizeof buf, "arg%u == own pid", a.index);
  else if (a.self == ArgSelf::kTid)
    std::snprintf(buf, sizeof buf, "arg%u == own tid", a.index);
  else if (a.mask == ~uint64_t{0})
    std::snprintf(buf, sizeof buf, "arg%u == %#llx", a.index, v);
  else if (__builtin_popcountll(a.mask) > 32)  // "all but these bits": print the complement
    std::snprintf(buf, sizeof buf, "arg%u & ~%#llx == %#llx", a.index, ~m, v);
  else
    std::snprintf(buf, sizeof buf, "arg%u & %#llx == %#llx", a.index, m, v);
  return buf;
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
  enter(s, true);
}

void sandbox_print_policy(const SandboxSpec& s) {
  std::printf("# %s: seccomp allowlist (default: kill the process)\n", s.process);
  auto print = [](const SyscallRule& r) {
    std::string cond;
    for (unsigned i = 0; i < r.nargs && i < kMaxArgCmps; i++)
      cond += (i != 0 ? " && " : "") + describe(r.args[i]);
    if (cond.empty())
      std::printf("%-18s # %s\n", r.name, r.reason);
    else
      std::printf("%-18s %s  # %s\n", r.name, cond.c_str(), r.reason);
  };
  for (const SyscallRule& r : kCommon) print(r);
  for (const SyscallRule& r : s.syscalls) print(r);
  if (s.tcp_options)
    for (const SyscallRule& r : kTcpOptions) print(r);
}

namespace {
// The number after "prefix:" in a probe name (a pid, a port), or -1.
long probe_arg(const std::string& call, const char* prefix) {
  const size_t n = std::strlen(prefix);
  if (call.compare(0, n, prefix) != 0 || call.size() == n) return -1;
  char* end = nullptr;
  const long v = std::strtol(call.c_str() + n, &end, 10);
  return (*end == '\0' && v > 0) ? v : -1;
}
// 13 when the call failed with `denied` (what Landlock, or a rule that answers
// instead of killing, returns); 0 when it went through; 1 for any other error.
int probe_result(long rc, int denied) {
  if (rc >= 0) return 0;
  if (errno == denied) return 13;
  std::fprintf(stderr, "probe: unexpected error: %s\n", std::strerror(errno));
  return 1;
}
}  // namespace

int sandbox_probe(const SandboxSpec& spec, const std::string& call) {
  SandboxSpec s = spec;
  s.drop_user = false;  // the probe keeps its user; the filter is the same
  if (const char* cap = std::getenv("CT_SANDBOX_PROBE_LANDLOCK_ABI")) {
    char* end = nullptr;
    g_probe_abi_cap = std::strtol(cap, &end, 10);
    if (*cap == '\0' || *end != '\0' || g_probe_abi_cap < 0) {
      std::fprintf(stderr, "CT_SANDBOX_PROBE_LANDLOCK_ABI: not an ABI version: %s\n", cap);
      return 2;
    }
  }
  // An fd of our own for the fcntl probes, made while socketpair() is allowed.
  int sv[2] = {-1, -1};
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
    std::fprintf(stderr, "probe: socketpair: %s\n", std::strerror(errno));
    return 2;
  }
  const int fd = sv[0];
  if (call == "second-thread") {
    // A thread that outlives the sandbox's start: entering must refuse (70).
    pthread_t t;
    if (pthread_create(
            &t, nullptr,
            [](void*) -> void* {
              pause();
              return nullptr;
            },
            nullptr) != 0)
      return 2;
  }
  const bool landlock_only = call.rfind("landlock-", 0) == 0;
  enter(s, !landlock_only);
  long pid = -1;
  if (call == "none" || call == "second-thread") return 0;  // entered: nothing refused
  if (call == "abort") {
    // An impossible state must still end in SIGABRT inside the sandbox, not SIGSYS.
    const bool impossible = true;
    CT_CHECK(!impossible);
  } else if (call == "chk-fail") {
    __chk_fail();  // what a _FORTIFY_SOURCE check calls on an overflow
  } else if (call == "execve") {
    char* const argv[] = {const_cast<char*>("/bin/true"), nullptr};
    execve("/bin/true", argv, nullptr);
  } else if (call == "socket") {
    (void)socket(AF_INET, SOCK_STREAM, 0);
  } else if (call == "socket-tcp") {
    (void)socket(AF_INET6, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, IPPROTO_TCP);
  } else if (call == "socket-udp") {
    (void)socket(AF_INET, SOCK_DGRAM, 0);
  } else if (call == "socket-mptcp") {
    (void)socket(AF_INET, SOCK_STREAM, 262);  // IPPROTO_MPTCP, newer than Debian 12's headers
  } else if (call == "socket-sctp") {
    (void)socket(AF_INET6, SOCK_STREAM, IPPROTO_SCTP);
  } else if (call == "socket-raw") {
    (void)socket(AF_INET, SOCK_RAW, IPPROTO_TCP);
  } else if (call == "socket-unix") {
    (void)socket(AF_UNIX, SOCK_STREAM, 0);
  } else if ((pid = probe_arg(call, "kill:")) > 0) {
    return probe_result(kill(static_cast<pid_t>(pid), SIGKILL), EPERM);
  } else if ((pid = probe_arg(call, "tkill:")) > 0) {
    return probe_result(syscall(SYS_tkill, pid, SIGKILL), EPERM);
  } else if ((pid = probe_arg(call, "tgkill:")) > 0) {
    return probe_result(syscall(SYS_tgkill, pid, pid, SIGKILL), EPERM);
  } else if (call == "tgkill-self-sigstop") {
    // Our own pid and tid, but not SIGABRT.
    (void)syscall(SYS_tgkill, getpid(), gettid(), SIGSTOP);
  } else if ((pid = probe_arg(call, "landlock-kill:")) > 0) {
    return probe_result(kill(static_cast<pid_t>(pid), SIGKILL), EPERM);
  } else if (call.rfind("landlock-abstract:", 0) == 0) {
    // A connect to an abstract unix socket bound outside this domain.
    const std::string name = call.substr(18);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    if (name.empty() || name.size() >= sizeof a.sun_path - 1) return 2;
    std::memcpy(a.sun_path + 1, name.data(), name.size());
    const int u = socket(AF_UNIX, SOCK_STREAM, 0);
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + 1 + name.size());
    return probe_result(connect(u, reinterpret_cast<sockaddr*>(&a), len), EPERM);
  } else if (call == "fcntl-nonblock") {
    const int fl = fcntl(fd, F_GETFL);
    return probe_result(fcntl(fd, F_SETFL, fl | O_NONBLOCK), EPERM);
  } else if (call == "fcntl-dupfd-cloexec") {
    return probe_result(fcntl(fd, F_DUPFD_CLOEXEC, 0), EPERM);
  } else if (call == "fcntl-dupfd") {
    (void)fcntl(fd, F_DUPFD, 0);
  } else if (call == "fcntl-async") {
    (void)fcntl(fd, F_SETFL, O_NONBLOCK | O_ASYNC);
  } else if (call == "fcntl-setown") {
    (void)fcntl(fd, F_SETOWN, getpid());  // any owner: the command itself is refused
  } else if (call == "fcntl-setsig") {
    (void)fcntl(fd, F_SETSIG, SIGUSR1);
  } else if (call == "setsockopt-nodelay") {
    const int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // EOPNOTSUPP here
  } else if (call == "setsockopt-ulp") {
    (void)setsockopt(fd, IPPROTO_TCP, TCP_ULP, "tls", 3);
  } else if (call == "setsockopt-attach-filter") {
    sock_filter accept_all{BPF_RET | BPF_K, 0, 0, 0xffffffff};
    sock_fprog prog{1, &accept_all};
    (void)setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof prog);
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
    const int sfd = socket(AF_INET, SOCK_STREAM, 0);
    if (connect(sfd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 && errno == EACCES) return 13;
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
