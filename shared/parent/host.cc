#include "shared/parent/host.h"

#include <arpa/inet.h>

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

Result<void> bind_listener(const std::string& spec, const char* flag, UniqueFd* out,
                           SockAddr* bound) {
  auto hp = parse_host_port(spec, /*allow_port_zero=*/true);
  if (!hp) return fail(std::string("bad ") + flag + " '" + spec + "': " + hp.what());
  auto addr = numeric_addr(*hp);
  if (!addr)
    return fail(std::string("bad ") + flag + " '" + spec + "': the address must be numeric");
  auto fd = listen_tcp(*addr, 4096);
  if (!fd) return fail(std::string("cannot listen on ") + spec + " (" + flag + "): " + fd.what());
  *out = std::move(fd).value();
  *bound = *addr;
  const uint16_t port = local_port(out->get());
  if (bound->family() == AF_INET)
    reinterpret_cast<sockaddr_in*>(&bound->ss)->sin_port = htons(port);
  else
    reinterpret_cast<sockaddr_in6*>(&bound->ss)->sin6_port = htons(port);
  return {};
}

}  // namespace ct
