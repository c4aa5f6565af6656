// Writes the hand-made seed corpora: fuzz/corpus/<target>/seed-<name>.
//
//   make fuzz-seeds        (runs: make_seeds fuzz/corpus)
//
// Seeds use the real encoders, so they stay valid when the encoding changes.
// Each target gets a few valid inputs and the boundary cases next to them
// (max payload and one more, an empty DATA with and without FIN, a HELLO at
// each end of its ranges, bodies at their caps); the fuzzer takes it from
// there, and `make fuzz` merges what it finds into the same directories.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "shared/ipc/channel.h"
#include "shared/ipc/msgs.h"
#include "shared/wire/frame.h"
#include "shared/wire/limits.h"
#include "shared/wire/origin.h"
#include "shared/wire/rendezvous.h"

namespace {

using namespace ct;
using Buf = std::vector<uint8_t>;

std::filesystem::path g_root;
int g_written = 0;

void write_seed(const char* target, const std::string& name, const Buf& b) {
  const std::filesystem::path dir = g_root / target;
  std::filesystem::create_directories(dir);
  std::ofstream f(dir / ("seed-" + name), std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  if (!f) {
    std::fprintf(stderr, "make_seeds: cannot write %s/%s\n", dir.c_str(), name.c_str());
    std::exit(1);
  }
  g_written++;
}

Buf cat(std::initializer_list<Buf> parts) {
  Buf out;
  for (const Buf& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

Hello broker_hello() {
  Hello h;
  h.role = Role::kBroker;
  h.opener = true;
  for (size_t i = 0; i < h.instance.size(); i++) h.instance[i] = static_cast<uint8_t>(i);
  return h;
}

Buf hello_payload(const Hello& h) {
  Buf f;
  encode_hello(f, h);
  return Buf(f.begin() + limits::kFrameHeaderSize, f.end());
}

// ---------------------------------------------------------------- frame decoder
// Input: one byte choosing the max payload (0: 16384, 1: 1024), then bytes.
void frame_seeds() {
  const char* t = "frame_decoder_fuzz";
  auto with = [](uint8_t sel, const Buf& b) { return cat({Buf{sel}, b}); };
  Buf hello, open, data, fin, window, conn_window, reset, ping, pong, goaway;
  encode_hello(hello, broker_hello());
  encode_open(open, 1);
  const Buf text = {'h', 'e', 'l', 'l', 'o'};
  encode_data(data, 1, text, false);
  encode_data(fin, 1, {}, true);
  encode_window(window, 1, 65536);
  encode_window(conn_window, 0, limits::kMaxWindow);
  encode_reset(reset, 1, Code::kCancel);
  encode_ping(ping, 0x0102030405060708u, false);
  encode_ping(pong, 1, true);
  encode_goaway(goaway, 7, Code::kShutdown);
  write_seed(t, "hello", with(0, hello));
  write_seed(t, "open", with(0, open));
  write_seed(t, "data", with(0, data));
  write_seed(t, "data-fin-empty", with(0, fin));
  write_seed(t, "window", with(0, window));
  write_seed(t, "window-conn-max", with(0, conn_window));
  write_seed(t, "reset", with(0, reset));
  write_seed(t, "ping", with(0, ping));
  write_seed(t, "ping-ack", with(0, pong));
  write_seed(t, "goaway", with(0, goaway));
  Buf status;
  encode_status(status, {.replicas = 3, .upstream = UpstreamState::kStandby});
  write_seed(t, "status", with(0, status));
  Buf pins;
  encode_pins(pins, {Pin{}, Pin{1, 2, 3}});
  write_seed(t, "pins-v4", with(15, pins));  // selector 15..19: version 4 (§5b)
  Buf pins_over;                             // one pin over kMaxPins: FRAME_SIZE from the header
  encode_header(pins_over, static_cast<uint32_t>(kMaxPinsPayload + kPinSize), FrameType::kPins, 0,
                0);
  write_seed(t, "pins-over-bound", with(15, pins_over));
  write_seed(
      t, "session",
      with(0, cat({hello, open, data, window, conn_window, ping, pong, fin, reset, goaway})));

  Buf max_data, over_data, min_data, over_min, empty_nofin, unknown, reserved, stream0,
      hello_nonzero, ping_stream;
  const Buf big(limits::kMaxFramePayload, 0x5a);
  encode_data(max_data, 3, big, true);
  write_seed(t, "data-max", with(0, max_data));
  encode_header(over_data, limits::kMaxFramePayload + 1, FrameType::kData, 0, 3);
  write_seed(t, "data-max-plus-1", with(0, over_data));
  encode_data(min_data, 3, Buf(limits::kMinFramePayload, 0xa5), false);
  write_seed(t, "data-min-max", with(1, min_data));
  encode_header(over_min, limits::kMinFramePayload + 1, FrameType::kData, 0, 3);
  write_seed(t, "data-min-max-plus-1", with(1, over_min));
  encode_header(empty_nofin, 0, FrameType::kData, 0, 3);
  write_seed(t, "data-empty-no-fin", with(0, empty_nofin));
  encode_header(unknown, 0, static_cast<FrameType>(7), 0, 0);
  write_seed(t, "unknown-type", with(0, unknown));
  encode_header(reserved, 0, FrameType::kOpen, 0, 0x80000001u);
  write_seed(t, "reserved-bit", with(0, reserved));
  encode_header(stream0, 0, FrameType::kOpen, 0, 0);
  write_seed(t, "open-stream-0", with(0, stream0));
  encode_header(hello_nonzero, kHelloSize, FrameType::kHello, 0, 1);
  write_seed(t, "hello-stream-1", with(0, hello_nonzero));
  encode_header(ping_stream, 8, FrameType::kPing, 0x02, 0);
  write_seed(t, "ping-bad-flag", with(0, ping_stream));
  // Version 3 (selector 10..14, §3a): an OPEN with an origin, one at the
  // bound and one byte over it, a malformed origin (the decoder passes it; the
  // session resets the stream), and an origin on a version 2 table.
  Origin o;
  OriginAddr a;
  a.family = 4;
  a.addr = {127, 0, 0, 2};
  a.port = 40000;
  o.source = a;
  a.addr[3] = 1;
  a.port = 8443;
  o.dest = a;
  o.stream_id = 0x0123456789abcdefu;
  o.cluster = "prod-eu";
  o.authority = "openbao.example";
  Buf open_origin, open_longest, open_over, open_bad;
  encode_open(open_origin, 1, encode_origin(o));
  write_seed(t, "open-origin-v3", with(10, open_origin));
  write_seed(t, "open-origin-v2", with(5, open_origin));
  Origin longest = o;
  a.family = 6;
  longest.source = a;
  longest.dest = a;
  longest.cluster = std::string(limits::kMaxClusterName, 'c');
  longest.authority = std::string(limits::kMaxAuthority, 'a');
  encode_open(open_longest, 3, encode_origin(longest));
  write_seed(t, "open-origin-max", with(10, open_longest));
  encode_header(open_over, limits::kMaxOriginPayload + 1, FrameType::kOpen, 0, 3);
  write_seed(t, "open-origin-max-plus-1", with(10, open_over));
  encode_open(open_bad, 5, Buf{1, 7, 5, 10, 0, 0, 1, 0, 80});
  write_seed(t, "open-origin-malformed", with(10, cat({open_bad, open_origin})));
  write_seed(t, "partial-header", with(0, Buf(hello.begin(), hello.begin() + 9)));
  write_seed(t, "partial-payload", with(0, Buf(data.begin(), data.end() - 1)));
}

// ---------------------------------------------------------------- hello
// Input: the 44-byte payload.
void hello_seeds() {
  const char* t = "hello_fuzz";
  write_seed(t, "broker", hello_payload(broker_hello()));
  Hello bridge = broker_hello();
  bridge.role = Role::kBridge;
  bridge.opener = false;
  write_seed(t, "bridge", hello_payload(bridge));
  Hello lo = broker_hello();
  lo.stream_window = 1;
  lo.conn_window = 1;
  lo.max_streams = 1;
  lo.max_frame = limits::kMinFramePayload;
  lo.role = Role::kForwardProcess;
  write_seed(t, "minimums", hello_payload(lo));
  Hello hi = broker_hello();
  hi.stream_window = limits::kMaxWindow;
  hi.conn_window = limits::kMaxWindow;
  hi.max_streams = 0xffffffffu;
  hi.max_frame = limits::kMaxFramePayload;
  hi.role = Role::kTlsProcess;
  write_seed(t, "maximums", hello_payload(hi));
  Hello range = broker_hello();
  range.max_version = 3;
  write_seed(t, "version-range", hello_payload(range));
  Hello future = broker_hello();
  future.min_version = kProtocolVersion + 1;
  future.max_version = kProtocolVersion + 1;
  write_seed(t, "version-future", hello_payload(future));
  Hello v1 = broker_hello();
  v1.max_version = 1;
  write_seed(t, "version-1-only", hello_payload(v1));
  Hello over = broker_hello();
  over.stream_window = limits::kMaxWindow + 1;
  over.max_frame = limits::kMaxFramePayload + 1;
  write_seed(t, "over-range", hello_payload(over));
  Buf bad_magic = hello_payload(broker_hello());
  bad_magic[3] = 'X';
  write_seed(t, "bad-magic", bad_magic);
  Buf reserved = hello_payload(broker_hello());
  reserved[11] = 1;
  write_seed(t, "reserved-set", reserved);
  Buf short_one = hello_payload(broker_hello());
  short_one.pop_back();
  write_seed(t, "short", short_one);
}

// ---------------------------------------------------------------- ipc
// Input: table (0 broker tls, 1 broker forward, 2 bridge tls, 3 bridge
// forward, 4 broker parent from tls, 5 broker parent from forward, 6 bridge
// parent from tls, 7 bridge parent from forward: fuzz/ipc_fuzz.cc kTables),
// fd count, datagram.
Buf datagram(Msg type, const Buf& body) {
  Buf d;
  ByteWriter w(d, 8 + limits::kMaxIpcMessage);
  w.u16(static_cast<uint16_t>(type));
  w.u16(0);
  w.u32(static_cast<uint32_t>(body.size()));
  w.bytes(body);
  return d;
}

void ipc_seeds() {
  const char* t = "ipc_fuzz";
  auto with = [](uint8_t table, uint8_t nfds, const Buf& b) { return cat({Buf{table, nfds}, b}); };
  ProcSettings s;
  s.peer_name = "broker.example";
  s.upstream = "127.0.0.1:8200";
  s.vault_tls_name = "openbao.example";  // an https:// --vault-addr with --vault-ca
  write_seed(t, "settings", with(0, 0, datagram(Msg::kSettings, encode_settings(s))));
  ProcSettings empty;
  empty.log_level = 3;
  write_seed(t, "settings-empty", with(3, 0, datagram(Msg::kSettings, encode_settings(empty))));
  Material m;
  m.cert_pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
  m.key_pem = "-----BEGIN PRIVATE KEY-----\nMC4C\n-----END PRIVATE KEY-----\n";
  m.ca_pem = m.cert_pem;
  Pin p{};
  for (size_t i = 0; i < p.size(); i++) p[i] = static_cast<uint8_t>(i * 7);
  m.pins = {p, p};
  m.upstream_ca_pem = m.cert_pem;  // --vault-ca
  write_seed(t, "material", with(2, 0, datagram(Msg::kMaterial, encode_material(m))));
  Material many;
  many.pins.assign(16, p);
  write_seed(t, "material-16-pins", with(0, 0, datagram(Msg::kMaterial, encode_material(many))));
  Status st;
  st.links_up = 2;
  st.text = "2 links up";
  write_seed(t, "status", with(4, 0, datagram(Msg::kStatus, encode_status(st))));
  // With certificates (shared/base/cert_report.h): a pinned leaf, a CA, a peer.
  st.certs.pins = 2;
  st.certs.certs.push_back({CertRole::kLeaf, 0, 1'800'000'000, true, p});
  st.certs.certs.push_back({CertRole::kCa, 1, 2'000'000'000, false, {}});
  st.certs.certs.push_back({CertRole::kPeer, 7, 1'790'000'000, true, p});
  write_seed(t, "status-certs", with(4, 0, datagram(Msg::kStatus, encode_status(st))));
  write_seed(t, "listener-fd", with(0, 1, datagram(Msg::kListener, {})));
  write_seed(t, "dialed-fd", with(2, 1, datagram(Msg::kDialed, {})));
  write_seed(t, "dial-failed", with(2, 0, datagram(Msg::kDialFailed, Buf(1024, 'x'))));
  write_seed(t, "dial-failed-over-cap", with(2, 0, datagram(Msg::kDialFailed, Buf(1025, 'x'))));
  write_seed(t, "material-error", with(4, 0, datagram(Msg::kMaterialError, {'b', 'a', 'd'})));
  write_seed(t, "ready", with(5, 0, datagram(Msg::kReady, {})));
  write_seed(t, "drain-missing-fd", with(1, 1, datagram(Msg::kDrain, {})));
  Buf wrong_len = datagram(Msg::kSettings, encode_settings(s));
  wrong_len[7]++;
  write_seed(t, "settings-wrong-length", with(0, 0, wrong_len));
  write_seed(t, "short-header", with(0, 0, Buf{0, 1, 0}));
  // Only the bridge's TLS process dials; DRAINED (36) is no message any more;
  // PEER_CHANNEL passes the type checks but never as a first message.
  write_seed(t, "dial-request", with(6, 0, datagram(Msg::kDialRequest, {})));
  write_seed(t, "dial-request-at-broker", with(4, 0, datagram(Msg::kDialRequest, {})));
  write_seed(t, "drained-gone", with(5, 0, datagram(static_cast<Msg>(36), {})));
  write_seed(t, "peer-channel-fd", with(0, 1, datagram(Msg::kPeerChannel, {})));
}

// ---------------------------------------------------------------- session
// Input: 5 config bytes per side (stream window, conn window, max streams,
// max frame, timing), then actions (session_fuzz.cc step(); the top bit of
// the opcode picks the bridge).
namespace op {
constexpr uint8_t kOpen = 0, kSend = 3, kFin = 7, kReset = 8, kConsume = 9, kPing = 11,
                  kInject = 12, kDeliver = 14, kClock = 19, kTick = 21, kGoAway = 22, kPump = 23,
                  kClosed = 25, kOpenMany = 26, kSetStatus = 27, kSetPins = 28, kBridge = 0x80;
}

struct Script {
  Buf b;
  Script(std::initializer_list<uint8_t> a_cfg, std::initializer_list<uint8_t> b_cfg) {
    b.insert(b.end(), a_cfg);
    b.insert(b.end(), b_cfg);
  }
  Script& add(std::initializer_list<uint8_t> bytes) {
    b.insert(b.end(), bytes);
    return *this;
  }
  Script& u16(uint16_t v) { return add({static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)}); }
};

void session_seeds() {
  const char* t = "session_fuzz";
  using namespace op;
  // Defaults: windows 256 KiB / 16 MiB (indexes 5, 6), max streams 16384 (5),
  // max frame 16384 (4), keepalive on (timing 0).
  const std::initializer_list<uint8_t> dflt = {5, 6, 5, 4, 0};

  write_seed(t, "handshake", Script(dflt, dflt).add({kPump}).b);

  // One stream each way: data, consume, FIN from both ends.
  Script one(dflt, dflt);
  one.add({kOpen, kPump, kSend, 0}).u16(1000).add({0});
  one.add({kPump, kBridge | kSend, 0}).u16(3000).add({1});
  one.add({kConsume, 0}).u16(0).add({kBridge | kConsume, 0}).u16(0);
  one.add({kFin, 0, kPump});
  write_seed(t, "one-stream", one.b);

  // Small windows (1024), several streams, delivery a few bytes at a time.
  Script small({2, 2, 5, 0, 1}, {2, 2, 5, 0, 1});
  small.add({kOpen, kOpen, kOpen});
  small.add({kDeliver}).u16(60).add({kBridge | kDeliver}).u16(60);
  small.add({kSend, 0}).u16(2000).add({0, kSend, 1}).u16(2000).add({0});
  small.add({kDeliver}).u16(7).add({kDeliver}).u16(500).add({kDeliver}).u16(0);
  small.add({kBridge | kConsume, 0}).u16(0).add({kBridge | kConsume, 1}).u16(0);
  small.add({kBridge | kDeliver}).u16(0).add({kSend, 0}).u16(2000).add({1, kPump});
  write_seed(t, "small-windows", small.b);

  // Keepalive: idle until the ping, the ACK, then a silent peer times out.
  Script ka(dflt, dflt);
  ka.add({kPump, kClock, 2}).u16(0).add({kTick, kPump});
  ka.add({kClock, 1}).u16(200).add({kTick, kBridge | kTick});
  write_seed(t, "keepalive-timeout", ka.b);

  // The bridge accepts one stream: the second OPEN is refused.
  Script refuse(dflt, {5, 6, 0, 4, 1});
  refuse.add({kPump, kOpen, kOpen, kPump, kSend, 0}).u16(10).add({1, kPump});
  write_seed(t, "refused", refuse.b);

  // GOAWAY from the bridge while the broker keeps opening.
  Script ga(dflt, dflt);
  ga.add({kOpen, kPump, kBridge | kGoAway, 0, kOpen, kDeliver}).u16(0);
  ga.add({kBridge | kDeliver}).u16(0).add({kOpen, kPump});
  write_seed(t, "goaway", ga.b);

  // Version 2: each side sets STATUS, again, and once more unchanged; then a
  // version 1 bridge (timing bit 1), to which no STATUS is ever sent.
  Script st(dflt, dflt);
  st.add({kSetStatus}).u16(3).add({0, kBridge | kSetStatus}).u16(0).add({1, kPump});
  st.add({kBridge | kSetStatus}).u16(0).add({4, kPump, kSetStatus}).u16(3).add({0, kPump});
  write_seed(t, "status", st.b);
  Script old(dflt, {5, 6, 5, 4, 2});
  old.add({kSetStatus}).u16(2).add({0, kPump, kOpen, kPump});
  write_seed(t, "status-version-1-peer", old.b);

  // Version 4 (§5b): both sides pin (timing bit 4) and exchange PINS after
  // HELLO; the broker reloads to three pins, then the same three again (not
  // resent); then a version 3 bridge (timing bit 3), to which none is sent.
  Script pn({5, 6, 5, 4, 16}, {5, 6, 5, 4, 16});
  pn.add({kPump, kSetPins, 2, 7, 8, 9, kPump, kSetPins, 2, 7, 8, 9, kBridge | kSetPins, 0, 3});
  pn.add({kOpen, kPump});
  write_seed(t, "pins-v4", pn.b);
  Script pn3({5, 6, 5, 4, 16}, {5, 6, 5, 4, 8 | 16});
  pn3.add({kPump, kSetPins, 1, 7, 8, kOpen, kPump});
  write_seed(t, "pins-version-3-peer", pn3.b);

  // Version 3 (§3a): every stream opened after the handshake carries an
  // origin, checked on arrival; a version 2 bridge (timing bit 2) gets empty
  // OPENs; an OPEN with a malformed origin injected into the bridge is reset
  // alone while the honest streams go on.
  Script org(dflt, dflt);
  org.add({kPump, kOpen, kOpen, kOpen, kPump, kSend, 0}).u16(100).add({1, kPump});
  write_seed(t, "origin-v3", org.b);
  Script org2(dflt, {5, 6, 5, 4, 4});
  org2.add({kPump, kOpen, kOpen, kPump, kSend, 0}).u16(10).add({1, kPump});
  write_seed(t, "origin-version-2-peer", org2.b);
  Script orgbad(dflt, dflt);
  orgbad.add({kPump, kOpen, kPump});
  orgbad.add({kBridge | kInject, 0, 5, 1, 0, 3, 9, 1, 'x', 1});  // OPEN(last+1) {9, 1, 'x'}
  orgbad.add({kOpen, kPump, kSend, 0}).u16(10).add({1, kPump});
  write_seed(t, "origin-malformed", orgbad.b);

  // Reset by the application, then frames for the closed stream.
  Script rs(dflt, dflt);
  rs.add({kOpen, kPump, kSend, 0}).u16(100).add({0, kReset, 0, 0, kPump});
  rs.add({kBridge | kSend, 0}).u16(100).add({0, kPump});
  write_seed(t, "reset", rs.b);

  // PING injected at a frame boundary (honest) and a PING ACK nobody asked for.
  Script ping(dflt, dflt);
  ping.add({kPump, kPing, 0, 5, kBridge | kPing, 1, 1, kPump});
  write_seed(t, "ping-inject", ping.b);

  // Raw frames: a WINDOW pushing past 2^31-1, DATA on a stream never opened,
  // a second HELLO, and a byte flip in the peer's output.
  Script raw(dflt, dflt);
  raw.add({kOpen, kPump});
  raw.add({kInject, 3, 1, 1, 3});  // WINDOW(stream 1, 2^31-1)
  raw.add({kBridge | kInject, 2, 5}).u16(4).add({'a', 'b', 'c', 'd', 1});  // DATA(last+1)
  raw.add({kInject, 6, 0, 0, 1, 0, 1, 1, 1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0x40, 0});
  raw.add({kSend, 0}).u16(100).add({0, kBridge | kInject, 7, 0}).u16(40).u16(12).add({4});
  raw.add({kPump});
  write_seed(t, "raw-frames", raw.b);

  // Many streams at once, then the transport ends mid-frame.
  Script many(dflt, {5, 6, 3, 4, 1});
  many.add({kOpenMany, 40, kPump, kOpenMany, 200, kDeliver}).u16(5);
  many.add({kBridge | kClosed, 1});
  write_seed(t, "many-then-closed", many.b);

  // The HELLO deadline passes with no HELLO delivered.
  Script late(dflt, dflt);
  late.add({kOpen, kClock, 3}).u16(0).add({kBridge | kTick, kTick, kPump});
  write_seed(t, "hello-timeout", late.b);
}

// ---------------------------------------------------------------- shm ring
// Input (shm_ring_fuzz.cc): a side byte, then actions, each an opcode byte
// (mod 13) and its operands. The seeds reach each rule of the trust model:
// an honest exchange on either side, a full ring, a position that goes
// backwards or claims more than the ring, and the peer's scribbles.
void shm_ring_seeds() {
  const char* t = "shm_ring_fuzz";
  enum : uint8_t { kWrite = 0, kRead = 2, kWaitSpace = 4, kWaitData = 5, kTake = 6 };
  enum : uint8_t { kPeerHead = 7, kPeerTail = 8, kFlag = 9, kPayload = 10, kOurs = 11 };
  enum : uint8_t { kHeader = 12 };
  enum : uint8_t { kHonest = 0, kAny = 1, kBack = 2, kPast = 3 };
  const Buf write_16k = {kWrite, 1, 0x40, 0x00, 0, 0};  // 16 KiB from offset 0
  const Buf write_full = {kWrite, 2, 31, 0, 0};         // the ring and 15 bytes more
  const Buf head_all = {kPeerHead, kHonest, 0xff, 0xff, 0xff, 0xff};
  const Buf tail_8k = {kPeerTail, kHonest, 0, 0, 0x20, 0x00, 0x20, 0x00, 0, 7};
  const Buf read_12k = {kRead, 1, 0x30, 0x00};
  const Buf honest =
      cat({write_16k, head_all, tail_8k, read_12k, {kWaitData, kTake, 0}, {kWaitSpace, kTake, 1}});
  write_seed(t, "honest-tls", cat({{0}, honest}));
  write_seed(t, "honest-forward", cat({{1}, honest}));
  write_seed(t, "full-ring",
             cat({{0}, write_full, {kWaitSpace}, write_full, head_all, write_full, {kWaitSpace}}));
  write_seed(t, "head-backwards",
             cat({{0}, write_16k, head_all, {kPeerHead, kBack, 0}, write_16k}));
  write_seed(t, "head-past-tail", cat({{0}, write_16k, {kPeerHead, kPast, 0, kWaitSpace}}));
  write_seed(t, "tail-past-ring", cat({{1}, {kPeerTail, kPast, 3, 0, 0, 0, 0, kRead, 0, 9}}));
  write_seed(t, "tail-any",
             cat({{0}, {kPeerTail, kAny, 0x80, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, kWaitData}}));
  write_seed(t, "scribbles",
             cat({{0},
                  {kFlag, 0, 1, 0, 0, 0, 1, kFlag, 1, 0, 0, 0, 0, 2},
                  {kPayload, 1, 0, 0, 0, 0, 4, 1, 2, 3, 4},
                  {kOurs, 1, 0xff, 0xff, 0, 0, 0, 0, 0, 0},
                  {kHeader, 0x02, 0x00, 0x7f},
                  write_16k,
                  tail_8k,
                  read_12k,
                  {kTake, 0, kTake, 1}}));
}

// ---------------------------------------------------------------- rendezvous
// Input: one byte (bit 0: preamble or answers; bits 1-4: piece size), then
// a preamble or a run of answers (fuzz/rendezvous_fuzz.cc).
void rendezvous_seeds() {
  const char* t = "rendezvous_fuzz";
  rdv::Preamble broker;
  broker.role = rdv::Role::kBroker;
  broker.id.fill(0x5a);
  broker.instances.push_back({});
  broker.instances[0].fill(0x11);
  rdv::Preamble bridge;
  bridge.id.fill(0x5a);
  for (size_t i = 1; i <= rdv::kMaxInstances; i++) {
    rdv::InstanceId id;
    id.fill(static_cast<uint8_t>(i));
    bridge.instances.push_back(id);
  }
  rdv::Preamble lone;
  lone.id.fill(0x5a);
  write_seed(t, "preamble-broker", cat({{0}, rdv::encode_preamble(broker)}));
  write_seed(t, "preamble-bridge-none", cat({{2}, rdv::encode_preamble(lone)}));
  write_seed(t, "preamble-bridge-max", cat({{14}, rdv::encode_preamble(bridge)}));
  Buf twice = rdv::encode_preamble(bridge);
  std::copy(twice.begin() + 40, twice.begin() + 56, twice.begin() + 56);
  write_seed(t, "preamble-instance-twice", cat({{0}, twice}));
  write_seed(t, "preamble-then-clienthello",
             cat({{0}, rdv::encode_preamble(lone), {0x16, 0x03, 0x01}}));
  write_seed(t, "answers-keepalive-paired",
             cat({{1},
                  rdv::encode_answer(rdv::Answer::kKeepalive),
                  rdv::encode_answer(rdv::Answer::kPaired, "broker 0011223344556677")}));
  write_seed(t, "answer-no-peer-long",
             cat({{3}, rdv::encode_answer(rdv::Answer::kNoPeer, std::string(300, 'r'))}));
  write_seed(t, "answer-paired-then-tls",
             cat({{1}, rdv::encode_answer(rdv::Answer::kPaired), {0x16, 0x03, 0x03}}));
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s <corpus-root>\n", argv[0]);
    return 2;
  }
  g_root = argv[1];
  frame_seeds();
  hello_seeds();
  ipc_seeds();
  session_seeds();
  shm_ring_seeds();
  rendezvous_seeds();
  std::printf("make_seeds: %d seeds written under %s\n", g_written, g_root.c_str());
  return 0;
}
