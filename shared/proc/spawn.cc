#include "shared/proc/spawn.h"

#include <fcntl.h>
#include <linux/close_range.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "shared/base/log.h"

extern char** environ;

namespace ct {

Result<UniqueFd> open_self_exe() {
  UniqueFd fd(::open("/proc/self/exe", O_RDONLY | O_CLOEXEC));
  if (!fd) return fail_errno(errno, "cannot open /proc/self/exe (is /proc mounted?)");
  return fd;
}

namespace {
// "/usr/bin/x" -> "/usr/bin"; "/x" -> "" (so that dir + "/" + name works).
std::string dir_of(const std::string& path) {
  const size_t slash = path.rfind('/');
  return slash == std::string::npos ? std::string() : path.substr(0, slash);
}
}  // namespace

Result<ForwardExeFile> open_forward_exe(const std::string& daemon) {
  char self[PATH_MAX];
  const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return fail_errno(errno, "cannot read /proc/self/exe (is /proc mounted?)");
  self[n] = '\0';
  const std::string name = daemon + "-forward";
  const std::string dir = dir_of(self);
  const std::string tries[] = {dir + "/" + name, dir_of(dir) + "/libexec/cloudtaser/" + name};
  std::string tried;
  for (const std::string& p : tries) {
    if (!tried.empty()) tried += ", ";
    // AT_EACCESS: as the effective user; X_OK also fails on a noexec mount.
    if (faccessat(AT_FDCWD, p.c_str(), X_OK, AT_EACCESS) != 0) {
      tried += p + " (" + std::strerror(errno) + ")";
      continue;
    }
    UniqueFd fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st {};
    if (!fd) {
      tried += p + " (" + std::strerror(errno) + ")";
      continue;
    }
    if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
      tried += p + " (not a regular file)";
      continue;
    }
    return ForwardExeFile{std::move(fd), p};
  }
  return fail("cannot find its forwarding executable " + name + "; tried " + tried +
              "; it ships with the daemon and belongs beside it or in ../libexec/cloudtaser/");
}

int exec_forward_exe(const std::string& daemon, char** argv) {
  constexpr int kExitUsage = 2;  // as DaemonParent's
  Result<ForwardExeFile> exe = open_forward_exe(daemon);
  if (!exe) {
    std::fprintf(stderr, "%s: %s\n", daemon.c_str(), exe.what().c_str());
    return kExitUsage;
  }
  argv[0] = exe->path.data();
  syscall(SYS_execveat, exe->fd.get(), "", argv, environ, AT_EMPTY_PATH);
  std::fprintf(stderr, "%s: cannot execute %s: %s\n", daemon.c_str(), exe->path.c_str(),
               std::strerror(errno));
  return kExitUsage;
}

pid_t spawn_child(int exe_fd, const std::string& argv0, const std::string& role_flag,
                  UniqueFd control) {
  // Built before fork: the child may only make async-signal-safe calls.
  const std::string version = std::string(kDaemonVersionFlag) + CT_VERSION;
  const pid_t parent = getpid();
  const pid_t pid = fork();
  if (pid != 0) return pid;  // parent (or -1)
  // Child: async-signal-safe calls only until exec.
  if (prctl(PR_SET_PDEATHSIG, SIGKILL) != 0 || getppid() != parent) _exit(71);
  const int c = fcntl(control.get(), F_DUPFD, 10);
  const int e = fcntl(exe_fd, F_DUPFD_CLOEXEC, 10);
  if (c < 0 || e < 0 || dup2(c, kChildControlFd) != kChildControlFd || dup3(e, 4, O_CLOEXEC) != 4)
    _exit(72);
  syscall(SYS_close_range, 5u, ~0u, 0u);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  char* const argv[] = {const_cast<char*>(argv0.c_str()), const_cast<char*>(role_flag.c_str()),
                        const_cast<char*>(version.c_str()), nullptr};
  syscall(SYS_execveat, 4, "", argv, environ, AT_EMPTY_PATH);
  _exit(73);
}

bool is_child_argv(int argc, char** argv, const char* daemon, const char* process) {
  if (argc < 2 || std::string("--child=") + process != argv[1]) return false;
  constexpr size_t kFlagLen = sizeof kDaemonVersionFlag - 1;
  const char* theirs = argc == 3 && std::strncmp(argv[2], kDaemonVersionFlag, kFlagLen) == 0
                           ? argv[2] + kFlagLen
                           : nullptr;
  if (theirs != nullptr && std::strcmp(theirs, CT_VERSION) == 0) return true;
  log::init(daemon, process, log::kInfo);
  LOG_ERROR(
      "refusing to run: this executable is version %s and its daemon %s%s; install the "
      "daemon and its helper from one package",
      CT_VERSION, theirs != nullptr ? "is version " : "gave no version",
      theirs != nullptr ? theirs : "");
  std::exit(kExitVersionMismatch);
}

UniqueFd child_take_control() {
  int type = 0;
  socklen_t len = sizeof type;
  if (getsockopt(kChildControlFd, SOL_SOCKET, SO_TYPE, &type, &len) != 0 ||
      type != SOCK_SEQPACKET) {
    std::fprintf(stderr, "this mode is internal: the daemon starts its own child processes\n");
    std::exit(70);
  }
  syscall(SYS_close_range, 4u, ~0u, 0u);
  fcntl(kChildControlFd, F_SETFD, FD_CLOEXEC);
  fcntl(kChildControlFd, F_SETFL, O_NONBLOCK);
  return UniqueFd(kChildControlFd);
}

}  // namespace ct
