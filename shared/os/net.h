// Socket helpers: address parsing, listeners, non-blocking connects and the
// TCP options every link and stream socket gets.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <optional>
#include <string>
#include <string_view>

#include "shared/base/result.h"
#include "shared/base/unique_fd.h"
#include "shared/wire/origin.h"

namespace ct {

struct SockAddr {
  sockaddr_storage ss{};
  socklen_t len = 0;
  const sockaddr* get() const { return reinterpret_cast<const sockaddr*>(&ss); }
  int family() const { return ss.ss_family; }
  std::string str() const;
};

struct HostPort {
  std::string host;  // without brackets
  uint16_t port = 0;
};

// Splits "host:port" or "[v6]:port"; anything else fails with the form expected.
// Port 0 ("any free port") is accepted only for listen addresses.
Result<HostPort> parse_host_port(std::string_view s, bool allow_port_zero = false);
// A numeric address only (no name lookup): listen addresses, tests.
std::optional<SockAddr> numeric_addr(const HostPort& hp);
// An IPv4 or IPv6 address literal (no brackets), not a name.
bool is_ip_literal(const std::string& s);
// Name resolution (parent processes only: it may read /etc and talk DNS).
Result<SockAddr> resolve(const HostPort& hp);

// A non-blocking listening TCP socket with SO_REUSEADDR. A failure carries
// the errno, its text alone as what().
Result<UniqueFd> listen_tcp(const SockAddr& a, int backlog);
// Starts a non-blocking connect; *in_progress tells whether to wait for
// EPOLLOUT. A failure carries the errno (EMFILE and ENFILE mean no fd).
Result<UniqueFd> connect_tcp(const SockAddr& a, bool* in_progress);
// The result of a non-blocking connect once the socket is writable.
int socket_error(int fd);
// TCP_NODELAY (we coalesce our own writes), and on link sockets keepalive and
// TCP_USER_TIMEOUT so un-ACKed data fails the link in bounded time (FI-06).
void tune_stream_socket(int fd);
void tune_link_socket(int fd, unsigned user_timeout_ms);
bool set_nonblock(int fd);
// The port a socket is bound to (tests bind port 0).
uint16_t local_port(int fd);

// accept4 (non-blocking, close-on-exec) with the peer's address. When the
// process is out of fds (EMFILE/ENFILE) a level-triggered listener would
// report the same connection forever: this gives back the reserve fd
// *spare, takes the connection off the queue, closes it and re-takes the
// reserve (a duplicate of spare_src), then reports *shed = true; with nothing
// queued it returns with errno EAGAIN, as a plain accept would. A process
// that holds a reserve from start can always shed instead of spinning.
// An IPv4 or IPv6 address as a stream's origin carries it (docs/protocol.md
// §3a): an IPv4-mapped IPv6 address becomes IPv4; another family, nullopt.
std::optional<OriginAddr> origin_addr(const sockaddr_storage& ss);
// The local address of a connected socket (the address a wrapper reached):
// getsockname(2) in origin form; nullopt when it fails.
std::optional<OriginAddr> local_origin_addr(int fd);

UniqueFd accept_peer(int listener, sockaddr_storage* peer, UniqueFd* spare, int spare_src,
                     bool* shed);

}  // namespace ct
