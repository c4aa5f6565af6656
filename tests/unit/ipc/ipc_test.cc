// The typed IPC layer (ipc.h) and the message bodies (ipc_msgs.h): the rules
// a received datagram is checked against, a real SOCK_SEQPACKET pair passing
// an fd, and decoders that consume a body exactly or fail.
#include "shared/ipc/channel.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "shared/ipc/msgs.h"
#include "shared/wire/frame.h"
#include "shared/wire/limits.h"

namespace ct {
namespace {

Status status(uint32_t up, std::string text) {
  Status s;
  s.links_up = up;
  s.text = std::move(text);
  return s;
}

std::vector<uint8_t> datagram(uint16_t type, Bytes body, uint16_t reserved = 0,
                              std::optional<uint32_t> len = std::nullopt) {
  std::vector<uint8_t> out;
  ByteWriter w(out, SIZE_MAX);
  w.u16(type);
  w.u16(reserved);
  w.u32(len.value_or(static_cast<uint32_t>(body.size())));
  w.bytes(body);
  return out;
}

const MsgRule kRules[] = {
    {Msg::kSettings, false, 64},
    {Msg::kListener, true, 0},
    {Msg::kDrain, false, 0},
};

bool check(const std::vector<uint8_t>& d, int nfds, std::string* why, IpcMessage* out = nullptr) {
  auto r = ipc_check(d, nfds, kRules);
  if (!r) {
    *why = r.what();
    return false;
  }
  if (out) *out = std::move(r).value();
  return true;
}

size_t open_fd_count() {
  size_t n = 0;
  DIR* d = opendir("/proc/self/fd");
  if (d == nullptr) return 0;
  while (readdir(d) != nullptr) n++;
  closedir(d);
  return n;
}

// ------------------------------------------------------------------ ipc_check

TEST(IpcCheck, AcceptsAWellFormedMessage) {
  const std::string body = "hello";
  IpcMessage m;
  std::string why;
  ASSERT_TRUE(check(datagram(1, as_bytes(body)), 0, &why, &m)) << why;
  EXPECT_EQ(m.type, Msg::kSettings);
  EXPECT_EQ(std::string(m.body.begin(), m.body.end()), body);
  ASSERT_TRUE(check(datagram(7, {}), 0, &why, &m)) << why;
  EXPECT_EQ(m.type, Msg::kDrain);
  EXPECT_TRUE(m.body.empty());
}

TEST(IpcCheck, UnknownOrUnacceptedType) {
  std::string why;
  EXPECT_FALSE(check(datagram(999, {}), 0, &why));
  EXPECT_NE(why.find("999"), std::string::npos) << why;
  // A real message type this channel end does not accept.
  why.clear();
  EXPECT_FALSE(check(datagram(static_cast<uint16_t>(Msg::kMaterial), {}), 0, &why));
  EXPECT_FALSE(why.empty());
  EXPECT_FALSE(check(datagram(0, {}), 0, &why));
}

TEST(IpcCheck, ShortHeader) {
  auto d = datagram(1, {});
  for (size_t n = 0; n < 8; n++) {
    std::string why;
    std::vector<uint8_t> cut(d.begin(), d.begin() + static_cast<std::ptrdiff_t>(n));
    EXPECT_FALSE(check(cut, 0, &why)) << n;
    EXPECT_FALSE(why.empty());
  }
}

TEST(IpcCheck, ReservedHeaderBits) {
  std::string why;
  EXPECT_FALSE(check(datagram(1, {}, 1), 0, &why));
  EXPECT_FALSE(check(datagram(1, {}, 0x8000), 0, &why));
}

TEST(IpcCheck, LengthMismatch) {
  const std::string body = "abcd";
  std::string why;
  EXPECT_FALSE(check(datagram(1, as_bytes(body), 0, 3), 0, &why));  // body longer
  EXPECT_FALSE(check(datagram(1, as_bytes(body), 0, 5), 0, &why));  // body shorter
  EXPECT_FALSE(check(datagram(1, as_bytes(body), 0, 0xFFFFFFFFu), 0, &why));
  EXPECT_TRUE(check(datagram(1, as_bytes(body), 0, 4), 0, &why));
}

TEST(IpcCheck, SizeCap) {
  std::string why;
  const std::vector<uint8_t> at_cap(64, 'a'), over(65, 'a');
  EXPECT_TRUE(check(datagram(1, at_cap), 0, &why)) << why;
  EXPECT_FALSE(check(datagram(1, over), 0, &why));
  EXPECT_NE(why.find("cap"), std::string::npos) << why;
  const std::vector<uint8_t> one(1, 0);
  EXPECT_FALSE(check(datagram(7, one), 0, &why));  // DRAIN carries nothing
}

TEST(IpcCheck, FdCount) {
  std::string why;
  EXPECT_TRUE(check(datagram(3, {}), 1, &why)) << why;
  EXPECT_FALSE(check(datagram(3, {}), 0, &why));  // missing fd
  EXPECT_FALSE(check(datagram(3, {}), 2, &why));  // too many
  EXPECT_FALSE(check(datagram(1, {}), 1, &why));  // unexpected fd
  EXPECT_NE(why.find("fd"), std::string::npos) << why;
}

// ------------------------------------------------------------------ a real channel

struct Channels {
  IpcChannel parent, child;
  Channels() {
    UniqueFd a, b;
    EXPECT_TRUE(make_seqpacket_pair(&a, &b));
    static const MsgRule kChildAccepts[] = {
        {Msg::kSettings, false, 4096}, {Msg::kListener, true, 0}, {Msg::kDrain, false, 0}};
    static const MsgRule kParentAccepts[] = {{Msg::kReady, false, 0}, {Msg::kStatus, false, 4096}};
    parent = IpcChannel(std::move(a), kParentAccepts);
    child = IpcChannel(std::move(b), kChildAccepts);
  }
};

TEST(IpcChannel, MessageAndFdPassing) {
  Channels c;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);

  ProcSettings s;
  s.log_level = 3;
  s.upstream = "127.0.0.1:8200";
  ASSERT_TRUE(c.parent.send(Msg::kSettings, encode_settings(s)));
  ASSERT_TRUE(c.parent.send(Msg::kListener, {}, wr.get()));
  EXPECT_FALSE(c.parent.wants_write());

  IpcMessage m;
  std::string why;
  ASSERT_EQ(c.child.recv(&m, &why), IpcChannel::Recv::kMessage) << why;
  EXPECT_EQ(m.type, Msg::kSettings);
  EXPECT_FALSE(m.fd.valid());
  auto got = decode_settings(m.body);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->upstream, "127.0.0.1:8200");
  EXPECT_EQ(got->log_level, 3);

  IpcMessage f;
  ASSERT_EQ(c.child.recv(&f, &why), IpcChannel::Recv::kMessage) << why;
  EXPECT_EQ(f.type, Msg::kListener);
  ASSERT_TRUE(f.fd.valid());
  EXPECT_NE(f.fd.get(), wr.get());  // a new descriptor for the same pipe
  EXPECT_EQ(fcntl(f.fd.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  // The received fd is the pipe's write end: bytes written to it come out of rd.
  ASSERT_EQ(write(f.fd.get(), "xy", 2), 2);
  char buf[4] = {};
  ASSERT_EQ(read(rd.get(), buf, sizeof buf), 2);
  EXPECT_EQ(std::string(buf, 2), "xy");

  EXPECT_EQ(c.child.recv(&m, &why), IpcChannel::Recv::kAgain);

  // And the other way.
  ASSERT_TRUE(c.child.send(Msg::kStatus, encode_status(status(2, "two links"))));
  ASSERT_EQ(c.parent.recv(&m, &why), IpcChannel::Recv::kMessage) << why;
  auto st = decode_status(m.body);
  ASSERT_TRUE(st.has_value());
  EXPECT_EQ(st->links_up, 2u);
  EXPECT_EQ(st->text, "two links");
}

TEST(IpcChannel, SenderKeepsItsOwnFd) {
  Channels c;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  ASSERT_TRUE(c.parent.send(Msg::kListener, {}, wr.get()));
  // send() passed a duplicate: our fd is still open and usable.
  EXPECT_NE(fcntl(wr.get(), F_GETFD), -1);
  ASSERT_EQ(write(wr.get(), "z", 1), 1);
}

TEST(IpcChannel, UnacceptedTypeIsBad) {
  Channels c;
  ASSERT_TRUE(c.parent.send(Msg::kDialRequest, as_bytes("")));
  IpcMessage m;
  std::string why;
  EXPECT_EQ(c.child.recv(&m, &why), IpcChannel::Recv::kBad);
  EXPECT_FALSE(why.empty());
}

TEST(IpcChannel, UnexpectedFdIsBadAndNotLeaked) {
  Channels c;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  const size_t before = open_fd_count();
  ASSERT_TRUE(c.parent.send(Msg::kDrain, {}, wr.get()));  // DRAIN carries no fd
  IpcMessage m;
  std::string why;
  EXPECT_EQ(c.child.recv(&m, &why), IpcChannel::Recv::kBad);
  EXPECT_NE(why.find("fd"), std::string::npos) << why;
  EXPECT_FALSE(m.fd.valid());
  EXPECT_EQ(open_fd_count(), before);  // the passed fd was closed, not leaked
}

// Sends a LISTENER datagram with `fds` attached, bypassing IpcChannel::send.
void send_with_fds(int sock, const std::vector<int>& fds) {
  auto d = datagram(static_cast<uint16_t>(Msg::kListener), {});
  iovec iov{d.data(), d.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  std::vector<cmsghdr> cbuf(CMSG_SPACE(fds.size() * sizeof(int)) / sizeof(cmsghdr) + 1);
  mh.msg_control = cbuf.data();
  mh.msg_controllen = CMSG_SPACE(fds.size() * sizeof(int));
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(fds.size() * sizeof(int));
  std::memcpy(CMSG_DATA(cm), fds.data(), fds.size() * sizeof(int));
  ASSERT_EQ(sendmsg(sock, &mh, 0), static_cast<ssize_t>(d.size()));
}

TEST(IpcChannel, TwoFdsAreBadAndNeitherLeaks) {
  Channels c;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  const size_t before = open_fd_count();
  send_with_fds(c.parent.fd(), {rd.get(), wr.get()});
  IpcMessage m;
  std::string why;
  EXPECT_EQ(c.child.recv(&m, &why), IpcChannel::Recv::kBad);
  EXPECT_FALSE(m.fd.valid());
  EXPECT_EQ(open_fd_count(), before);
}

// More fds than the receive buffer has room for: the kernel truncates the
// control data; that is refused too (P-03), and nothing leaks.
TEST(IpcChannel, TruncatedControlDataIsBadAndNothingLeaks) {
  Channels c;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  const size_t before = open_fd_count();
  send_with_fds(c.parent.fd(), std::vector<int>(12, wr.get()));
  IpcMessage m;
  std::string why;
  EXPECT_EQ(c.child.recv(&m, &why), IpcChannel::Recv::kBad);
  EXPECT_NE(why.find("truncated"), std::string::npos) << why;
  EXPECT_EQ(open_fd_count(), before);
}

// FI-57: at its fd limit a process cannot take an fd it is sent; the kernel
// cuts the control data short. That is this process's state, not a bad
// sender: the message comes out as kFdLost, without the fd, and nothing leaks.
TEST(IpcChannel, FI57_AnFdThisProcessCannotTakeIsLostNotBad) {
  Channels c;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  UniqueFd rd(p[0]), wr(p[1]);
  rlimit old{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old), 0);
  rlimit low = old;
  low.rlim_cur = open_fd_count() + 8;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0);
  std::vector<UniqueFd> filler;  // every fd number below the limit taken
  for (int i = 0; i < 64; i++) {
    const int f = dup(rd.get());
    if (f < 0) break;
    filler.emplace_back(f);
  }
  send_with_fds(c.parent.fd(), {wr.get()});  // IpcChannel::send would dup it: no fd left
  IpcMessage m;
  std::string why;
  const auto r = c.child.recv(&m, &why);
  filler.clear();
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old), 0);
  EXPECT_EQ(r, IpcChannel::Recv::kFdLost) << why;
  EXPECT_EQ(m.type, Msg::kListener);
  EXPECT_FALSE(m.fd.valid());
  EXPECT_NE(why.find("out of file descriptors"), std::string::npos) << why;
  // The channel goes on: the next message arrives with its fd.
  ASSERT_TRUE(c.parent.send(Msg::kListener, {}, wr.get()));
  EXPECT_EQ(c.child.recv(&m, &why), IpcChannel::Recv::kMessage) << why;
  EXPECT_TRUE(m.fd.valid());
}

TEST(IpcChannel, PassingABadFdFailsAtSend) {
  Channels c;
  int p[2];
  ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
  const int closed = p[1];
  close(p[0]);
  close(p[1]);
  EXPECT_FALSE(c.parent.send(Msg::kListener, {}, closed));
  EXPECT_FALSE(c.parent.wants_write());
}

TEST(IpcChannel, PeerClosedIsClosed) {
  Channels c;
  c.parent = IpcChannel();  // closes the parent end
  IpcMessage m;
  std::string why;
  EXPECT_EQ(c.child.recv(&m, &why), IpcChannel::Recv::kClosed);
}

TEST(IpcChannel, OversizedBodyIsRefusedAtSend) {
  Channels c;
  std::vector<uint8_t> big(limits::kMaxIpcMessage + 1, 0);
  EXPECT_FALSE(c.parent.send(Msg::kSettings, big));
  EXPECT_FALSE(c.parent.wants_write());
}

// A peer that does not read: the queue is capped, send() says so, and
// everything queued is delivered in order once the peer reads again.
TEST(IpcChannel, QueueCapWhenPeerDoesNotRead) {
  Channels c;
  int sent = 0;
  for (; sent < 100000; sent++)
    if (!c.parent.send(Msg::kStatus, encode_status(status(static_cast<uint32_t>(sent), "x"))))
      break;
  ASSERT_LT(sent, 100000) << "send() never reported a full queue";
  EXPECT_TRUE(c.parent.wants_write());
  // Drain (raw reads: the child end does not accept STATUS): every accepted
  // message arrives, in order, as flush() pushes out what was queued.
  int received = 0;
  std::vector<uint8_t> buf(256);
  for (int spins = 0; spins < 1000000 && received < sent; spins++) {
    const ssize_t n = recv(c.child.fd(), buf.data(), buf.size(), MSG_DONTWAIT);
    if (n > 8) {
      auto st = decode_status(Bytes(buf).subspan(8, static_cast<size_t>(n) - 8));
      ASSERT_TRUE(st.has_value());
      ASSERT_EQ(st->links_up, static_cast<uint32_t>(received));
      received++;
    } else {
      ASSERT_TRUE(c.parent.flush());
    }
  }
  EXPECT_EQ(received, sent);
  EXPECT_FALSE(c.parent.wants_write());
}

// ------------------------------------------------------------------ bodies

template <typename T, typename Dec>
void expect_every_truncation_rejected(const std::vector<uint8_t>& full, Dec dec) {
  for (size_t n = 0; n < full.size(); n++)
    EXPECT_FALSE(dec(Bytes(full).first(n)).has_value()) << "prefix " << n;
  auto longer = full;
  longer.push_back(0);
  EXPECT_FALSE(dec(Bytes(longer)).has_value()) << "trailing byte";
  EXPECT_TRUE(dec(Bytes(full)).has_value());
}

TEST(IpcMsgs, SettingsRoundTripAndTruncation) {
  ProcSettings s;
  s.log_level = 1;
  s.pending_timeout_ms = 123456;
  s.drain_timeout_ms = 0xFFFFFFFFu;
  s.peer_name = "broker.example.internal";
  s.upstream = "[::1]:8200";
  s.stream_idle_timeout_ms = 0xFEDCBA98u;
  auto b = encode_settings(s);
  auto got = decode_settings(b);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->stream_idle_timeout_ms, 0xFEDCBA98u);
  EXPECT_EQ(got->memory_budget_mib, limits::kDefaultMemoryBudgetMiB);
  EXPECT_EQ(got->log_level, 1);
  EXPECT_EQ(got->pending_timeout_ms, 123456u);
  EXPECT_EQ(got->drain_timeout_ms, 0xFFFFFFFFu);
  EXPECT_EQ(got->peer_name, s.peer_name);
  EXPECT_EQ(got->upstream, s.upstream);
  expect_every_truncation_rejected<ProcSettings>(b, decode_settings);
}

TEST(IpcMsgs, SettingsCarryTheClusterNameAndProxyProtocol) {
  ProcSettings s;
  s.cluster_name = "prod-eu-1";
  s.proxy_protocol = true;
  auto b = encode_settings(s);
  auto got = decode_settings(b);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->cluster_name, "prod-eu-1");
  EXPECT_TRUE(got->proxy_protocol);
  expect_every_truncation_rejected<ProcSettings>(b, decode_settings);
  // A name that could not go into an origin is refused here too.
  for (const char* bad : {"has space", "tab\there", "\x7f"}) {
    s.cluster_name = bad;
    EXPECT_FALSE(decode_settings(encode_settings(s)).has_value()) << bad;
  }
  s.cluster_name = std::string(limits::kMaxClusterName + 1, 'x');
  EXPECT_FALSE(decode_settings(encode_settings(s)).has_value());
}

TEST(IpcMsgs, SettingsEmptyStringsAndBadLogLevel) {
  ProcSettings s;
  auto got = decode_settings(encode_settings(s));
  ASSERT_TRUE(got.has_value());
  EXPECT_TRUE(got->peer_name.empty());
  EXPECT_TRUE(got->upstream.empty());
  s.log_level = 4;
  EXPECT_FALSE(decode_settings(encode_settings(s)).has_value());
}

TEST(IpcMsgs, SettingsCarryTheHealthProbeAndRefuseABadPath) {
  ProcSettings s;
  s.vault_health_path = "/v1/sys/health?standbyok=true";
  s.vault_health_interval_ms = 0;
  s.vault_tls_name = "openbao.example.com";
  auto b = encode_settings(s);
  auto got = decode_settings(b);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->vault_health_path, s.vault_health_path);
  EXPECT_EQ(got->vault_health_interval_ms, 0u);
  EXPECT_EQ(got->vault_tls_name, s.vault_tls_name);
  expect_every_truncation_rejected<ProcSettings>(b, decode_settings);
  // The path goes into a request line as is: one token of printable ASCII.
  for (const std::string& bad :
       {std::string(""), std::string("v1/sys/health"), std::string("/a b"),
        std::string("/a\r\nHost: x"), std::string("/\x7f"), std::string("/\xc3\xa9"),
        "/" + std::string(kMaxHealthPath, 'a')}) {
    ProcSettings w;
    w.vault_health_path = bad;
    EXPECT_FALSE(valid_health_path(bad)) << bad;
    EXPECT_FALSE(decode_settings(encode_settings(w)).has_value()) << bad;
  }
  EXPECT_TRUE(valid_health_path("/" + std::string(kMaxHealthPath - 1, 'a')));
}

TEST(IpcMsgs, MaterialRoundTripAndTruncation) {
  Material m;
  m.cert_pem = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
  m.key_pem = std::string(5000, 'k');
  m.ca_pem = "";
  m.upstream_ca_pem = "-----BEGIN CERTIFICATE-----\nvault ca\n-----END CERTIFICATE-----\n";
  for (int i = 0; i < 3; i++) {
    Pin p;
    p.fill(static_cast<uint8_t>(i + 1));
    m.pins.push_back(p);
  }
  auto b = encode_material(m);
  ASSERT_FALSE(b.empty());
  auto got = decode_material(b);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->cert_pem, m.cert_pem);
  EXPECT_EQ(got->key_pem, m.key_pem);
  EXPECT_EQ(got->ca_pem, m.ca_pem);
  EXPECT_EQ(got->pins, m.pins);
  EXPECT_EQ(got->upstream_ca_pem, m.upstream_ca_pem);
  // Truncations: checking every prefix of a 5 KiB key is cheap enough.
  expect_every_truncation_rejected<Material>(b, decode_material);
}

TEST(IpcMsgs, MaterialPinCountCapped) {
  Material m;
  m.pins.resize(16);
  EXPECT_TRUE(decode_material(encode_material(m)).has_value());
  m.pins.resize(17);
  EXPECT_FALSE(decode_material(encode_material(m)).has_value());
}

TEST(IpcMsgs, MaterialOverTheCapEncodesToNothing) {
  Material m;
  m.ca_pem = std::string(limits::kMaxIpcMessage, 'c');
  auto b = encode_material(m);
  EXPECT_TRUE(b.empty());
  EXPECT_FALSE(decode_material(b).has_value());
}

TEST(IpcMsgs, MaterialHugeStringLengthIsRejected) {
  std::vector<uint8_t> b;
  ByteWriter w(b, 64);
  w.u32(0xFFFFFFF0u);  // cert length far beyond the body
  w.str("abc");
  EXPECT_FALSE(decode_material(b).has_value());
}

TEST(IpcMsgs, WipeMaterial) {
  Material m;
  m.cert_pem = "cert";
  m.key_pem = "secret key";
  m.ca_pem = "ca";
  m.upstream_ca_pem = "vault ca";
  m.pins.resize(2);
  wipe_material(m);
  EXPECT_TRUE(m.upstream_ca_pem.empty());
  EXPECT_TRUE(m.cert_pem.empty());
  EXPECT_TRUE(m.key_pem.empty());
  EXPECT_TRUE(m.ca_pem.empty());
  EXPECT_TRUE(m.pins.empty());
}

TEST(IpcMsgs, StatusRoundTripAndTruncation) {
  Status s = status(7, "7 links up");
  auto b = encode_status(s);
  auto got = decode_status(b);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->links_up, 7u);
  EXPECT_EQ(got->text, "7 links up");
  expect_every_truncation_rejected<Status>(b, decode_status);
}

TEST(IpcMsgs, StatusCarriesTheBridgesInstances) {
  Status s = status(2, "connected");
  s.replicas_expected = 3;
  s.instances = {"0123456789abcdef", "fedcba9876543210"};
  auto b = encode_status(s);
  auto got = decode_status(b);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->replicas_expected, 3);
  EXPECT_EQ(got->instances, s.instances);
  EXPECT_TRUE(got->same_state(s));
  expect_every_truncation_rejected<Status>(b, decode_status);
  // Names become Prometheus label values: anything but 16 lowercase hex
  // digits is refused, and so is a list longer than the replicas allowed.
  for (const char* bad : {"0123456789ABCDEF", "0123456789abcde", "0123456789abcdef0",
                          "01234567\"9abcdef", "0123456789abcde\n"}) {
    Status w = status(1, "x");
    w.instances = {bad};
    EXPECT_FALSE(decode_status(encode_status(w)).has_value()) << bad;
  }
  Status many = status(1, "x");
  many.instances.assign(limits::kMaxReplicas + 1, "0123456789abcdef");
  EXPECT_FALSE(decode_status(encode_status(many)).has_value());
}

TEST(IpcMsgs, StatusCarriesTheUpstreamStateBelowTheLastOne) {
  Status s = status(1, "x");
  s.upstream = kUpstreamStates - 1;
  auto got = decode_status(encode_status(s));
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->upstream, kUpstreamStates - 1);
  EXPECT_TRUE(got->same_state(s));
  Status other = s;
  other.upstream = 1;
  EXPECT_FALSE(other.same_state(s));  // a new state is worth a message
  s.upstream = kUpstreamStates;
  EXPECT_FALSE(decode_status(encode_status(s)).has_value());
  s.upstream = 0xff;
  EXPECT_FALSE(decode_status(encode_status(s)).has_value());
}

TEST(IpcMsgs, StatusWithAControlCharacterIsRefused) {
  // A newline would smuggle READY=1, STOPPING=1 or MAINPID= into sd_notify.
  for (const char* text : {"up\nREADY=1", "up\rx", "tab\there", "del\x7f", "nul"}) {
    std::string t(text);
    if (t == "nul") t = std::string("a\0b", 3);
    EXPECT_FALSE(decode_status(encode_status(status(1, t))).has_value()) << text;
  }
  EXPECT_TRUE(
      decode_status(encode_status(status(1, "connected to broker b.example.com"))).has_value());
}

TEST(IpcChannel, AFailedSendMarksTheChannelFailed) {
  Channels c;
  EXPECT_FALSE(c.parent.failed());
  // Within the IPC cap but larger than the socket's send buffer: sendmsg
  // fails with EMSGSIZE, and the channel says so instead of wedging its queue.
  std::vector<uint8_t> big(limits::kMaxIpcMessage, 'x');
  EXPECT_FALSE(c.parent.send(Msg::kMaterial, big));
  EXPECT_TRUE(c.parent.failed());
}

TEST(IpcChannel, AMaterialSizedMessageFitsOneDatagram) {
  // limits::kMaxMaterial must fit the default socket send buffer.
  Channels c;
  std::vector<uint8_t> body(limits::kMaxMaterial, 'k');
  ASSERT_TRUE(c.parent.send(Msg::kMaterial, body));
  EXPECT_FALSE(c.parent.failed());
  EXPECT_FALSE(c.parent.wants_write());
}

TEST(IpcMsgs, MsgNames) {
  EXPECT_STREQ(msg_name(Msg::kSettings), "SETTINGS");
  EXPECT_STREQ(msg_name(Msg::kDialRequest), "DIAL_REQUEST");
  EXPECT_STREQ(msg_name(static_cast<Msg>(999)), "UNKNOWN");
}

}  // namespace
}  // namespace ct
