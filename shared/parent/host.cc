#include "shared/parent/host.h"

#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cerrno>
#include <cstddef>
#include <cstdlib>
#include <cstring>

#include "shared/base/unique_fd.h"

namespace ct {

void sd_notify(const std::string& msg) {
  const char* path = std::getenv("NOTIFY_SOCKET");
  if (path == nullptr || path[0] == '\0') return;
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  const size_t plen = std::strlen(path);
  if (plen >= sizeof sa.sun_path) return;
  std::memcpy(sa.sun_path, path, plen);
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0';  // abstract namespace
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!fd) return;
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + plen);
  sendto(fd.get(), msg.data(), msg.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr*>(&sa), len);
}

Result<void> raise_fd_limit(uint64_t* from, uint64_t* to) {
  rlimit r{};
  if (getrlimit(RLIMIT_NOFILE, &r) != 0) return fail_errno(errno, "");
  *from = *to = r.rlim_cur;
  if (r.rlim_cur == r.rlim_max) return {};
  r.rlim_cur = r.rlim_max;
  if (setrlimit(RLIMIT_NOFILE, &r) != 0) return fail_errno(errno, "");
  *to = r.rlim_cur;
  return {};
}

}  // namespace ct
