#include "shared/ipc/channel.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "shared/wire/limits.h"

namespace ct {

namespace {
constexpr size_t kHeader = 8;
constexpr size_t kMaxQueued = 256;  // control messages are few; more means a stuck peer
}  // namespace

const char* msg_name(Msg m) {
  switch (m) {
    case Msg::kSettings:
      return "SETTINGS";
    case Msg::kMaterial:
      return "MATERIAL";
    case Msg::kListener:
      return "LISTENER";
    case Msg::kPeerChannel:
      return "PEER_CHANNEL";
    case Msg::kPeerRing:
      return "PEER_RING";
    case Msg::kDialed:
      return "DIALED";
    case Msg::kDialFailed:
      return "DIAL_FAILED";
    case Msg::kDrain:
      return "DRAIN";
    case Msg::kPing:
      return "PING";
    case Msg::kPeerWake:
      return "PEER_WAKE";
    case Msg::kPong:
      return "PONG";
    case Msg::kReady:
      return "READY";
    case Msg::kMaterialError:
      return "MATERIAL_ERROR";
    case Msg::kDialRequest:
      return "DIAL_REQUEST";
    case Msg::kStatus:
      return "STATUS";
    case Msg::kMetricsListener:
      return "METRICS_LISTENER";
    case Msg::kStats:
      return "STATS";
    case Msg::kNone:
      break;
  }
  return "UNKNOWN";
}

IpcChannel::IpcChannel(UniqueFd fd, std::span<const MsgRule> accepts)
    : fd_(std::move(fd)), rules_(accepts) {}

// Queued datagrams may hold key material (MATERIAL): wiped before they are freed.
void IpcChannel::wipe_queue() noexcept {
  for (Pending& p : queue_) explicit_bzero(p.datagram.data(), p.datagram.size());
  queue_.clear();
}

IpcChannel::~IpcChannel() {
  wipe_queue();
}

IpcChannel& IpcChannel::operator=(IpcChannel&& o) noexcept {
  if (this == &o) return *this;
  wipe_queue();
  fd_ = std::move(o.fd_);
  rules_ = std::move(o.rules_);
  queue_ = std::move(o.queue_);
  failed_ = o.failed_;
  rbuf_ = std::move(o.rbuf_);
  return *this;
}

bool IpcChannel::send(Msg type, Bytes body, int pass_fd) {
  if (queue_.size() >= kMaxQueued || body.size() > limits::kMaxIpcMessage) {
    failed_ = true;
    return false;
  }
  Pending p;
  p.datagram.reserve(kHeader + body.size());
  ByteWriter w(p.datagram, kHeader + limits::kMaxIpcMessage);
  w.u16(static_cast<uint16_t>(type));
  w.u16(0);
  w.u32(static_cast<uint32_t>(body.size()));
  w.bytes(body);
  if (pass_fd >= 0) {
    p.fd.reset(fcntl(pass_fd, F_DUPFD_CLOEXEC, 0));
    if (!p.fd) return false;
  }
  queue_.push_back(std::move(p));
  return flush();
}

bool IpcChannel::flush() {
  while (!queue_.empty()) {
    Pending& p = queue_.front();
    iovec iov{p.datagram.data(), p.datagram.size()};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int))];
    if (p.fd) {
      std::memset(cbuf, 0, sizeof cbuf);
      mh.msg_control = cbuf;
      mh.msg_controllen = sizeof cbuf;
      cmsghdr* c = CMSG_FIRSTHDR(&mh);
      c->cmsg_level = SOL_SOCKET;
      c->cmsg_type = SCM_RIGHTS;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      const int f = p.fd.get();
      std::memcpy(CMSG_DATA(c), &f, sizeof f);
    }
    const ssize_t n = sendmsg(fd_.get(), &mh, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) return true;
      failed_ = true;
      return false;
    }
    explicit_bzero(p.datagram.data(), p.datagram.size());
    queue_.pop_front();
  }
  return true;
}

const MsgRule* MsgSequence::find(Msg type) const {
  for (const MsgRule& r : rules_)
    if (r.type == type) return &r;
  return nullptr;
}

Result<void> MsgSequence::admit(Msg type) {
  const MsgRule* rule = find(type);
  if (rule == nullptr) return fail(std::string(msg_name(type)) + " not accepted here");
  // A message that leads a pair (PEER_RING) holds the channel until its
  // follower arrives: the pair is one step, never split by another message.
  for (const MsgRule& r : rules_)
    if (r.after != Msg::kNone && r.after == last_ && r.type != type)
      return fail(std::string(msg_name(type)) + " where " + msg_name(r.type) + " must follow " +
                  msg_name(last_));
  if (rule->after != Msg::kNone && last_ != rule->after)
    return fail(std::string(msg_name(type)) + " without " + msg_name(rule->after) +
                " just before it");
  if ((rule->flags & kOnce) != 0)
    for (Msg m : seen_once_)
      if (m == type) return fail(std::string(msg_name(type)) + " sent twice");
  if ((rule->when & (running_ ? kPhaseRunning : kPhaseSetup)) == 0) {
    const MsgRule* opener = nullptr;
    for (const MsgRule& r : rules_)
      if ((r.flags & kOpens) != 0) opener = &r;
    return fail(std::string(msg_name(type)) + (running_ ? " after " : " before ") +
                (opener != nullptr ? msg_name(opener->type) : "the running phase"));
  }
  if ((rule->flags & kOnce) != 0) seen_once_.push_back(type);
  if ((rule->flags & kOpens) != 0) running_ = true;
  last_ = type;
  return {};
}

Result<IpcMessage> ipc_check(Bytes datagram, int nfds, std::span<const MsgRule> accepts) {
  ByteReader rd(datagram);
  const uint16_t type = rd.u16();
  const uint16_t reserved = rd.u16();
  const uint32_t len = rd.u32();
  if (!rd.ok()) return fail("short header");
  if (reserved != 0) return fail("reserved header bits set");
  const MsgRule* rule = nullptr;
  for (const MsgRule& r : accepts)
    if (static_cast<uint16_t>(r.type) == type) rule = &r;
  if (rule == nullptr) return fail("message type " + std::to_string(type) + " not accepted here");
  if (len != rd.remaining()) return fail("length field does not match the datagram");
  if (len > rule->max_len) return fail(std::string(msg_name(rule->type)) + " over its size cap");
  if (nfds != (rule->has_fd ? 1 : 0))
    return fail(std::string(msg_name(rule->type)) + " with the wrong number of fds");
  Bytes body = rd.bytes(len);
  IpcMessage out;
  out.type = rule->type;
  out.body.assign(body.begin(), body.end());
  return out;
}

IpcChannel::Recv IpcChannel::recv(IpcMessage* out, std::string* why) {
  constexpr size_t kBufSize = kHeader + limits::kMaxIpcMessage + 1;
  if (!rbuf_) rbuf_.reset(new uint8_t[kBufSize]);  // uninitialised: recvmsg fills what counts
  iovec iov{rbuf_.get(), kBufSize};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  // Room for several fds so that a peer passing too many is seen and refused
  // rather than having the kernel silently truncate (P-03).
  alignas(cmsghdr) char cbuf[CMSG_SPACE(sizeof(int) * 8)];
  mh.msg_control = cbuf;
  mh.msg_controllen = sizeof cbuf;
  const ssize_t n = recvmsg(fd_.get(), &mh, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  if (n < 0) {
    if (errno == EAGAIN || errno == EINTR) return Recv::kAgain;
    if (errno == ECONNRESET) return Recv::kClosed;  // the peer process died
    *why = std::string("recvmsg: ") + std::strerror(errno);
    return Recv::kBad;
  }
  if (n == 0) return Recv::kClosed;
  // Take ownership of every fd first so none leaks whatever happens next.
  std::vector<UniqueFd> fds;
  for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c != nullptr; c = CMSG_NXTHDR(&mh, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    const size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int f;
      std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof f);
      fds.emplace_back(f);
    }
  }
  const Bytes datagram(rbuf_.get(), static_cast<size_t>(n));
  // Control data cut short while there was room for more fds than arrived:
  // the kernel could not install an fd into this process (its fd limit,
  // FI-57), which says nothing against the sender. A message that is valid
  // with the one fd it should carry comes out as kFdLost, without it.
  const bool fd_lost =
      (mh.msg_flags & MSG_TRUNC) == 0 && (mh.msg_flags & MSG_CTRUNC) != 0 && fds.empty();
  if ((mh.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) != 0 && !fd_lost) {
    *why = "truncated datagram or control data";
    return Recv::kBad;
  }
  auto checked = ipc_check(datagram, fd_lost ? 1 : static_cast<int>(fds.size()), rules_.rules());
  Result<void> admitted = checked ? rules_.admit(checked->type) : checked.status();
  // The buffer is reused for the life of the channel: no copy of a MATERIAL
  // (the key) stays in it.
  explicit_bzero(rbuf_.get(), static_cast<size_t>(n));
  if (!admitted) {
    *why = admitted.what();
    return Recv::kBad;
  }
  *out = std::move(checked).value();
  if (fd_lost) {
    *why = "the fd it carried could not be received (out of file descriptors)";
    return Recv::kFdLost;
  }
  if (!fds.empty()) out->fd = std::move(fds.front());
  return Recv::kMessage;
}

bool make_seqpacket_pair(UniqueFd* a, UniqueFd* b) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) return false;
  a->reset(sv[0]);
  b->reset(sv[1]);
  return true;
}

bool make_stream_pair(UniqueFd* a, UniqueFd* b) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) return false;
  a->reset(sv[0]);
  b->reset(sv[1]);
  return true;
}

}  // namespace ct
