#include "shared/os/net.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/tcp.h>

#include <cerrno>
#include <charconv>
#include <cstring>

namespace ct {

std::string SockAddr::str() const {
  char host[INET6_ADDRSTRLEN] = "?";
  uint16_t port = 0;
  if (ss.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&ss);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
    return std::string(host) + ":" + std::to_string(port);
  }
  if (ss.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&ss);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
    return "[" + std::string(host) + "]:" + std::to_string(port);
  }
  return "?";
}

Result<HostPort> parse_host_port(std::string_view s, bool allow_port_zero) {
  HostPort hp;
  std::string_view port;
  if (!s.empty() && s.front() == '[') {
    const size_t close = s.find(']');
    if (close == std::string_view::npos || close + 1 >= s.size() || s[close + 1] != ':') {
      return fail("expected [ipv6]:port");
    }
    hp.host = std::string(s.substr(1, close - 1));
    port = s.substr(close + 2);
  } else {
    const size_t colon = s.rfind(':');
    if (colon == std::string_view::npos || s.find(':') != colon) {
      return fail("expected host:port");
    }
    hp.host = std::string(s.substr(0, colon));
    port = s.substr(colon + 1);
  }
  unsigned v = 0;
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
  if (hp.host.empty() || port.empty() || ec != std::errc() || p != port.data() + port.size() ||
      (v == 0 && !allow_port_zero) || v > 65535) {
    return fail("expected host:port with a port from 1 to 65535");
  }
  hp.port = static_cast<uint16_t>(v);
  return hp;
}

std::optional<SockAddr> numeric_addr(const HostPort& hp) {
  SockAddr a;
  auto* v4 = reinterpret_cast<sockaddr_in*>(&a.ss);
  auto* v6 = reinterpret_cast<sockaddr_in6*>(&a.ss);
  if (inet_pton(AF_INET, hp.host.c_str(), &v4->sin_addr) == 1) {
    v4->sin_family = AF_INET;
    v4->sin_port = htons(hp.port);
    a.len = sizeof(sockaddr_in);
    return a;
  }
  if (inet_pton(AF_INET6, hp.host.c_str(), &v6->sin6_addr) == 1) {
    v6->sin6_family = AF_INET6;
    v6->sin6_port = htons(hp.port);
    a.len = sizeof(sockaddr_in6);
    return a;
  }
  return std::nullopt;
}

Result<SockAddr> resolve(const HostPort& hp) {
  if (auto a = numeric_addr(hp)) return *a;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = getaddrinfo(hp.host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || res == nullptr) {
    return fail(std::string("cannot resolve ") + hp.host + ": " + gai_strerror(rc));
  }
  SockAddr a;
  std::memcpy(&a.ss, res->ai_addr, res->ai_addrlen);
  a.len = res->ai_addrlen;
  freeaddrinfo(res);
  if (a.ss.ss_family == AF_INET)
    reinterpret_cast<sockaddr_in*>(&a.ss)->sin_port = htons(hp.port);
  else
    reinterpret_cast<sockaddr_in6*>(&a.ss)->sin6_port = htons(hp.port);
  return a;
}

Result<UniqueFd> listen_tcp(const SockAddr& a, int backlog) {
  UniqueFd fd(socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno(errno, "");
  const int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd.get(), a.get(), a.len) != 0 || listen(fd.get(), backlog) != 0)
    return fail_errno(errno, "");
  return fd;
}

Result<UniqueFd> connect_tcp(const SockAddr& a, bool* in_progress) {
  UniqueFd fd(socket(a.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return fail_errno(errno, "");
  *in_progress = false;
  if (connect(fd.get(), a.get(), a.len) != 0) {
    if (errno != EINPROGRESS) return fail_errno(errno, "");
    *in_progress = true;
  }
  return fd;
}

int socket_error(int fd) {
  int e = 0;
  socklen_t len = sizeof e;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0) return errno;
  return e;
}

void tune_stream_socket(int fd) {
  const int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

void tune_link_socket(int fd, unsigned user_timeout_ms) {
  tune_stream_socket(fd);
  const int one = 1, idle = 5, intvl = 5, cnt = 3;
  setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &intvl, sizeof intvl);
  setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &cnt, sizeof cnt);
  setsockopt(fd, IPPROTO_TCP, TCP_USER_TIMEOUT, &user_timeout_ms, sizeof user_timeout_ms);
  // Socket buffers are left to the kernel: setting SO_SNDBUF/SO_RCVBUF would
  // switch off autotuning, which grows them far past what we could set.
}

bool set_nonblock(int fd) {
  const int fl = fcntl(fd, F_GETFL);
  return fl >= 0 && fcntl(fd, F_SETFL, fl | O_NONBLOCK) == 0;
}

uint16_t local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return 0;
  if (ss.ss_family == AF_INET) return ntohs(reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port);
  return 0;
}

UniqueFd accept_peer(int listener, sockaddr_storage* peer, UniqueFd* spare, int spare_src,
                     bool* shed) {
  *shed = false;
  socklen_t len = sizeof *peer;
  UniqueFd fd(
      accept4(listener, reinterpret_cast<sockaddr*>(peer), &len, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (fd || (errno != EMFILE && errno != ENFILE)) return fd;
  const int saved = errno;
  spare->reset();
  UniqueFd victim(accept4(listener, nullptr, nullptr, SOCK_CLOEXEC));
  // With the table full the kernel says EMFILE before it looks at the queue;
  // with the reserve free it tells the truth, and an empty queue is EAGAIN
  // (the caller stops quietly) rather than an error to log.
  const int victim_err = errno;
  *shed = static_cast<bool>(victim);
  if (victim) {
    // Shed with an RST: a FIN right after the accept could pass for an empty
    // answer; a reset is a refusal any client retries.
    const linger abort_close{1, 0};
    (void)setsockopt(victim.get(), SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
  }
  victim.reset();
  spare->reset(fcntl(spare_src, F_DUPFD_CLOEXEC, 0));
  errno = *shed ? saved : victim_err;
  return UniqueFd();
}

std::optional<OriginAddr> origin_addr(const sockaddr_storage& ss) {
  OriginAddr a;
  if (ss.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&ss);
    a.family = 4;
    std::memcpy(a.addr.data(), &in->sin_addr, 4);
    a.port = ntohs(in->sin_port);
    return a;
  }
  if (ss.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&ss);
    a.port = ntohs(in6->sin6_port);
    if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
      a.family = 4;
      std::memcpy(a.addr.data(), in6->sin6_addr.s6_addr + 12, 4);
    } else {
      a.family = 6;
      std::memcpy(a.addr.data(), in6->sin6_addr.s6_addr, 16);
    }
    return a;
  }
  return std::nullopt;
}

std::optional<OriginAddr> local_origin_addr(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return std::nullopt;
  return origin_addr(ss);
}

bool is_ip_literal(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

}  // namespace ct
