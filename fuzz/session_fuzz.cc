// The multiplexer state machine, both roles, driven by an action list
// (Envoy codec_impl_fuzz style, decoded with FuzzInput instead of protobuf).
//
// Two sessions run back to back in memory: A is the broker (the OPENER), B the
// bridge. The input first picks both configurations (windows, stream limit,
// max frame, keepalive), then a list of actions: open, send (at most what
// send_capacity() allows), fin, reset, consume, PING injected as a raw frame,
// a raw or mutated frame injected into one side, k bytes of one side's output
// delivered to the other, the fake clock advanced, tick, go_away, pump
// everything, transport closed.
//
// The harness keeps its own model of each side's streams from what the
// application did and the events it saw. After every action, on both sides:
//  - open_streams() <= limits::kMaxConcurrentStreams (and <= the configured
//    limit on the side that accepts streams);
//  - the session's streams are exactly the model's, in the matching state;
//  - events are consistent: no Data/Fin/Reset/Writable for a stream the
//    application does not know, no Opened on the opener, Ready and Error at
//    most once and nothing after Error, Data never empty or over max frame;
//  - send_capacity() is 0 on a stream that cannot send, never above 2^31-1 or
//    the output high-water mark, and never above what the peer granted.
// The last is checked exactly while the run is "honest" (no mutated bytes
// injected): the harness decodes every byte it delivers, adds up the HELLO
// windows and WINDOW credits the peer really sent, and compares with what was
// sent. While honest, a session must also never emit a frame its peer rejects:
// no connection error but TIMEOUT / ENHANCE_YOUR_CALM (or what a closed
// transport gives), no stream reset but REFUSED and the application's own
// codes, and every DATA byte arrives unchanged and in order.
// A CT_CHECK abort inside the library is a finding like any failed oracle.
//
// Cost: a run may hold thousands of streams (open_many), and checking every
// stream after every action made such runs quadratic (an input of 77 actions
// and 8,900 streams took 3.7 s, and these inputs set the target's average
// speed). So after each action every stream is checked while a side holds at
// most kSweepAll of them (exactly as before); above that, the streams the
// action or its events named are checked, plus the next kSweepAll in id order
// (a cursor that wraps), so each stream is still checked at least every
// ceil(n / kSweepAll) actions, and all of them at the end. The counts, the
// model's size against the session's and the event checks stay per action.
#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "shared/wire/frame.h"
#include "shared/wire/limits.h"
#include "shared/wire/origin.h"
#include "shared/wire/session.h"

namespace {

using namespace ct;
using fuzz::FuzzInput;
using std::chrono::milliseconds;

constexpr size_t kMaxActions = 4096;
// The most one feed() hands a session (see deliver()).
constexpr size_t kFeedPiece = 16 * 1024;
// Streams per side checked in full after every action (see above).
constexpr size_t kSweepAll = 8;

// The byte at offset `off` of stream `id`: lets the receiver check content.
uint8_t pattern(uint32_t id, uint64_t off) {
  return static_cast<uint8_t>((id * 131u) ^ off ^ (off >> 8) * 7u);
}

// The same bytes without a loop: pattern(id, off) depends only on the low
// byte of id * 131 and on off mod 65536, so one table per low byte (128 KiB:
// two periods; all 256 built once, before the first input, so that no input
// covers the building) holds every run of up to 65536 bytes. A send points
// into it and a Data event is memcmp'd against it, instead of a fresh zeroed
// vector filled byte by byte and a check byte by byte: those loops were a
// quarter of the time of the slowest corpus inputs (perf; the ones that move
// megabytes weigh most in the target's average speed).
constexpr size_t kPeriod = 65536;
using PatternTables = std::array<std::unique_ptr<uint8_t[]>, 256>;
PatternTables build_pattern_tables() {
  PatternTables t;
  for (uint32_t low = 0; low < 256; low++) {
    t[low].reset(new uint8_t[2 * kPeriod]);
    for (size_t i = 0; i < 2 * kPeriod; i++) t[low][i] = pattern(low, i);
  }
  return t;
}
const PatternTables& pattern_tables() {
  static const PatternTables t = build_pattern_tables();
  return t;
}
const uint8_t* pattern_run(uint32_t id, uint64_t off) {
  return pattern_tables()[static_cast<uint8_t>(id * 131u)].get() + off % kPeriod;
}

// Whether `data` is stream id's bytes from offset `off`.
bool is_pattern(uint32_t id, uint64_t off, Bytes data) {
  while (!data.empty()) {
    const size_t n = std::min(data.size(), kPeriod);
    if (std::memcmp(data.data(), pattern_run(id, off), n) != 0) return false;
    data = data.subspan(n);
    off += n;
  }
  return true;
}

// Codes the application passes to reset() and go_away().
constexpr Code kAppCodes[] = {Code::kCancel, Code::kUpstreamRefused, Code::kUpstreamReset,
                              Code::kNoBridge};
bool is_app_code(Code c) {
  return std::find(std::begin(kAppCodes), std::end(kAppCodes), c) != std::end(kAppCodes);
}

struct StreamModel {
  bool sent_fin = false;
  bool recv_fin = false;
  uint64_t sent = 0;        // DATA payload bytes we sent
  uint64_t received = 0;    // DATA payload bytes Data events gave us
  uint64_t unconsumed = 0;  // received, not yet consume()d
};

struct Side {
  const char* name = "";
  SessionConfig cfg;
  std::optional<Session> s;
  std::map<uint32_t, StreamModel> streams;  // what the application believes is open
  bool ready = false;
  bool errored = false;
  bool transport_closed = false;
  uint32_t last_opened = 0;
  uint64_t sent_total = 0;
  // Every STATUS the application set (the default first): what an honest
  // peer may have received.
  std::vector<LinkStatus> told{LinkStatus{}};
  // Every pin set the application configured or set (§5b): what an honest
  // peer's PINS must be one of.
  std::vector<std::vector<std::array<uint8_t, kPinSize>>> pins_told;
  // Streams this side opened with an origin in the OPEN (version 3).
  std::set<uint32_t> origin_sent;
  // Streams the last action or its events named: checked after it.
  std::vector<uint32_t> touched;
  // Where the rolling check of a side with many streams goes on.
  uint32_t sweep_from = 0;
  // Every stream with unconsumed > 0 is here (a superset: pump() filters).
  std::vector<uint32_t> unconsumed_ids;

  // Shadow decode of the byte pipe into this side (frames the peer sent).
  std::vector<uint8_t> partial;  // delivered bytes not yet a whole frame
  bool shadow_ok = true;
  bool hello_in = false;
  uint32_t peer_stream_window = 0;
  uint16_t shadow_version = 0;  // the version the peer's HELLO and ours give (0 before)
  uint64_t conn_grant = 0;      // HELLO + WINDOW(0) credits
  std::unordered_map<uint32_t, uint64_t> credited;  // WINDOW(id) credits
};

class Harness {
 public:
  explicit Harness(FuzzInput& in) : in_(in) {
    configure(a_, "broker", Role::kBroker, true);
    configure(b_, "bridge", Role::kBridge, false);
  }

  void run() {
    check(a_);
    check(b_);
    for (size_t i = 0; i < kMaxActions && !in_.empty(); i++) {
      step();
      process(a_);
      process(b_);
      check(a_);
      check(b_);
    }
    pump(64);
    process(a_);
    process(b_);
    check(a_, true);
    check(b_, true);
    final_check();
  }

 private:
  // ---------------------------------------------------------------- setup
  void configure(Side& x, const char* name, Role role, bool opener) {
    constexpr uint32_t kWindows[] = {1,
                                     100,
                                     1024,
                                     16384,
                                     65535,
                                     limits::kDefaultStreamWindow,
                                     limits::kDefaultConnWindow,
                                     limits::kMaxWindow};
    constexpr uint32_t kStreams[] = {1, 2, 3, 8, 100, limits::kMaxConcurrentStreams};
    constexpr uint32_t kFrames[] = {limits::kMinFramePayload, limits::kMinFramePayload + 1, 4096,
                                    limits::kMaxFramePayload - 1, limits::kMaxFramePayload};
    x.name = name;
    x.cfg.role = role;
    x.cfg.opener = opener;
    x.cfg.stream_window = in_.pick(kWindows);
    x.cfg.conn_window = in_.pick(kWindows);
    x.cfg.max_streams = in_.pick(kStreams);
    x.cfg.max_frame = in_.pick(kFrames);
    const uint8_t timing = in_.u8();
    x.cfg.ping_interval = (timing & 1) ? Duration::zero() : Duration(limits::kPingInterval);
    // Bit 1: this side is an old (version 1) peer, which never sends STATUS;
    // bit 2: a version 2 peer, which never sends an origin (§3a).
    x.cfg.max_version = (timing & 2) ? 1 : (timing & 4) ? 2 : (timing & 8) ? 3 : kProtocolVersion;
    // Bit 4: this side pins the peer's key (sends PINS on a version 4 link).
    if (timing & 16) {
      x.cfg.pins.emplace_back().fill(opener ? 0xa1 : 0xb1);
      x.pins_told.push_back(x.cfg.pins);
    }
    x.cfg.instance[0] = opener ? 0xaa : 0xbb;
    x.s.emplace(x.cfg, now_);
  }

  Side& side(uint8_t v) { return (v & 1) ? b_ : a_; }
  Side& peer(const Side& x) { return &x == &a_ ? b_ : a_; }

  // ---------------------------------------------------------------- actions
  void step() {
    const uint8_t op = in_.u8();
    Side& x = side(op >> 7);
    if (trace_)
      std::fprintf(stderr, "t=%lldms %s op %u (A out %zu, B out %zu)\n",
                   static_cast<long long>(
                       std::chrono::duration_cast<milliseconds>(now_.time_since_epoch()).count()),
                   x.name, op % 32u, a_.s->output().size(), b_.s->output().size());
    switch (op % 32) {
      case 0:
      case 1:
      case 2:
        return do_open(x);
      case 3:
      case 4:
      case 5:
      case 6:
        return do_send(x);
      case 7:
        return do_fin(x);
      case 8:
        return do_reset(x);
      case 9:
      case 10:
        return do_consume(x);
      case 11:
        return do_ping(x);
      case 12:
      case 13:
        return do_inject(x);
      case 14:
      case 15:
      case 16:
      case 17:
      case 18:
        return do_deliver(x);
      case 19:
      case 20:
        return do_clock();
      case 21:
        return do_tick(x);
      case 22:
        return do_go_away(x);
      case 23:
      case 24:
        return pump(8);
      case 25:
        return do_transport_closed(x);
      case 26:
        return do_open_many(x);
      case 27:
        return do_set_status(x);
      case 28:
        return do_set_pins(x);
      default:
        return do_deliver(x);
    }
  }

  // A stream the application may name: one of its own, or any id.
  uint32_t pick_stream(Side& x) {
    const uint8_t v = in_.u8();
    const uint32_t id =
        x.streams.empty() || v % (x.streams.size() + 1) == x.streams.size()
            ? in_.u8()
            : std::next(x.streams.begin(), static_cast<std::ptrdiff_t>(v % x.streams.size()))
                  ->first;
    x.touched.push_back(id);
    return id;
  }

  void do_open(Side& x) {
    // Every stream carries an origin (§3a), derived from nothing but its id
    // so that older corpus entries keep their meaning; it goes out only on a
    // version 3 connection.
    // Encoded only when it goes out: below version 3 the session sends an
    // empty OPEN whatever it is given.
    const uint32_t next = x.last_opened + 1;
    const bool with_origin = x.s->version() >= kOriginVersion;
    const std::vector<uint8_t> origin =
        with_origin ? encode_origin(origin_for(next)) : std::vector<uint8_t>{};
    const uint32_t id = x.s->open(origin);
    if (!x.cfg.opener) {
      FZ_CHECK(id == 0, "%s: the non-opener opened stream %u", x.name, id);
      return;
    }
    if (id == 0) {
      FZ_CHECK(x.s->dead() || x.s->goaway_sent() || x.s->goaway_received() ||
                   x.s->open_streams() >= x.s->peer_hello().max_streams,
               "%s: open() refused on a live connection", x.name);
      return;
    }
    FZ_CHECK(id > x.last_opened, "%s: stream id %u after %u", x.name, id, x.last_opened);
    FZ_CHECK(x.streams.count(id) == 0, "%s: open() reused %u", x.name, id);
    x.last_opened = id;
    x.streams[id] = StreamModel{};
    x.touched.push_back(id);
    if (with_origin && id == next) x.origin_sent.insert(id);
  }

  // The origin an honest opener sends on stream `id`.
  static Origin origin_for(uint32_t id) {
    Origin o;
    OriginAddr a;
    a.family = (id & 1) ? 4 : 6;
    a.addr[0] = 10;
    a.addr[3] = static_cast<uint8_t>(id);
    a.port = static_cast<uint16_t>(id);
    o.source = a;
    a.port = 443;
    if ((id & 2) == 0) o.dest = a;
    o.stream_id = 0x1234567800000000u | id;
    if ((id & 4) == 0) o.cluster = "cluster-" + std::to_string(id);
    if ((id & 8) == 0) o.authority = "openbao.example";
    return o;
  }

  void do_open_many(Side& x) {
    const uint8_t n = in_.u8();
    for (uint8_t i = 0; i < n; i++) do_open(x);
  }

  void do_send(Side& x) {
    const uint32_t id = pick_stream(x);
    const uint16_t len = in_.u16();
    const bool fin = in_.boolean();
    auto it = x.streams.find(id);
    if (it != x.streams.end() && it->second.sent_fin) return;  // the app knows it sent FIN
    const size_t cap = x.s->send_capacity(id);
    check_capacity(x, id, it == x.streams.end() ? nullptr : &it->second, cap);
    const size_t n = std::min<size_t>(len, cap);  // at most 65535: one run of the table
    const uint64_t off = it == x.streams.end() ? 0 : it->second.sent;
    const Bytes data(pattern_run(id, off), n);
    const bool live = it != x.streams.end() && !x.s->dead();
    x.s->send(id, data, fin);
    if (!live || (n == 0 && !fin)) return;
    it->second.sent += n;
    x.sent_total += n;
    if (fin) {
      it->second.sent_fin = true;
      if (it->second.recv_fin) x.streams.erase(it);
    }
  }

  void do_fin(Side& x) {
    const uint32_t id = pick_stream(x);
    auto it = x.streams.find(id);
    if (it != x.streams.end() && it->second.sent_fin) return;
    const bool live = it != x.streams.end() && !x.s->dead();
    x.s->close_write(id);
    if (!live) return;
    it->second.sent_fin = true;
    if (it->second.recv_fin) x.streams.erase(it);
  }

  void do_reset(Side& x) {
    const uint32_t id = pick_stream(x);
    const Code code = in_.pick(kAppCodes);
    const bool live = x.streams.count(id) != 0 && !x.s->dead();
    x.s->reset(id, code);
    if (live) x.streams.erase(id);
  }

  void do_consume(Side& x) {
    const uint32_t id = pick_stream(x);
    const uint16_t amount = in_.u16();
    auto it = x.streams.find(id);
    if (it == x.streams.end()) {
      x.s->consume(id, 0);
      return;
    }
    const uint64_t n =
        amount == 0 ? it->second.unconsumed : std::min<uint64_t>(amount, it->second.unconsumed);
    x.s->consume(id, static_cast<size_t>(n));
    if (!x.s->dead()) it->second.unconsumed -= n;
  }

  // PING (or PING ACK) injected into x as a raw frame. Injected at a frame
  // boundary of the pipe it is legal input and the run stays honest.
  void do_ping(Side& x) {
    const bool ack = in_.boolean();
    const uint8_t small = in_.u8();
    // Small opaques can match the keepalive PING in flight (ids 1, 2, ...).
    const uint64_t opaque = (small & 0x80) ? in_.u64() : small;
    complete_partial_frame(x);
    // Mid-frame, or before the peer's HELLO, it is a protocol violation.
    if (!x.partial.empty() || !x.shadow_ok || !x.s->ready()) honest_ = false;
    std::vector<uint8_t> f;
    encode_ping(f, opaque, ack);
    x.s->feed(f, now_);
  }

  // Bytes the peer never sent: the run is no longer honest.
  void do_inject(Side& x) {
    honest_ = false;
    std::vector<uint8_t> f;
    const uint8_t mode = in_.u8();
    const uint32_t ids[] = {
        0, 1, 2, 3, x.last_opened, x.last_opened + 1, limits::kMaxStreamId, 0x80000001u};
    const size_t which = in_.u8() % (std::size(ids) + 1);
    const uint32_t id = which < std::size(ids) ? ids[which] : in_.u32();
    switch (mode % 9) {
      case 0: {                              // any header, payload of the claimed length (or not)
        const uint8_t type = in_.u8() % 11;  // every type, PINS, and one that does not exist
        const uint8_t flags = in_.u8();
        const Bytes payload = in_.bytes(in_.u8());
        const uint32_t length = in_.boolean() ? static_cast<uint32_t>(payload.size()) : in_.u32();
        encode_header(f, length, static_cast<FrameType>(type), flags, id);
        f.insert(f.end(), payload.begin(), payload.end());
        break;
      }
      case 1:
        encode_open(f, id);
        break;
      case 2: {
        const Bytes payload = in_.bytes(in_.u16());
        encode_data(f, id, payload, in_.boolean());
        break;
      }
      case 3: {
        constexpr uint32_t kIncs[] = {0, 1, 1024, limits::kMaxWindow, 0x80000000u, 0xffffffffu};
        encode_window(f, id, in_.boolean() ? in_.pick(kIncs) : in_.u32());
        break;
      }
      case 4:
        encode_reset(f, id, static_cast<Code>(in_.u32()));
        break;
      case 5:
        encode_goaway(f, id, static_cast<Code>(in_.u32()));
        break;
      case 6: {  // a HELLO with fuzzed fields
        Hello h;
        h.min_version = in_.u16();
        h.max_version = in_.u16();
        h.role = static_cast<Role>(in_.u8());
        h.opener = in_.boolean();
        h.stream_window = in_.u32();
        h.conn_window = in_.u32();
        h.max_streams = in_.u32();
        h.max_frame = in_.u32();
        encode_hello(f, h);
        break;
      }
      case 8: {  // a STATUS with fuzzed fields (and whatever the version allows)
        const uint16_t replicas = in_.u16();
        const uint8_t flags = in_.u8();
        const uint8_t upstream = in_.u8();
        const uint32_t reserved = in_.boolean() ? 0 : in_.u32();
        encode_header(f, kStatusSize, FrameType::kStatus, 0, 0);
        ByteWriter w(f, SIZE_MAX);
        w.u16(replicas);
        w.u8(flags);
        w.u8(upstream);
        w.u32(reserved);
        break;
      }
      case 7: {  // the peer's pending output with one byte flipped
        const Bytes out = peer(x).s->output();
        const Bytes chunk = out.first(std::min<size_t>(out.size(), in_.u16()));
        f.assign(chunk.begin(), chunk.end());
        const uint16_t at = in_.u16();  // separate reads: a ^= b evaluates b first
        const uint8_t flip = static_cast<uint8_t>(in_.u8() | 1);
        if (!f.empty()) f[at % f.size()] ^= flip;
        break;
      }
    }
    x.s->feed(f, now_);
  }

  void do_deliver(Side& from) {
    const uint16_t k = in_.u16();
    deliver(from, k == 0 ? SIZE_MAX : k);
  }

  void do_clock() {
    const uint8_t mode = in_.u8();
    const uint16_t v = in_.u16();
    switch (mode % 4) {
      case 0:
        now_ += milliseconds(v);
        break;
      case 1:
        now_ += milliseconds(uint64_t{v} * 100);
        break;
      case 2:
      case 3: {
        const TimePoint t = side(mode).s->next_deadline();
        if (t != TimePoint::max() && t > now_) now_ = t;
        break;
      }
    }
  }

  void do_tick(Side& x) { x.s->tick(now_); }

  // What the application tells its peer (§5a): any replicas, any valid state.
  void do_set_status(Side& x) {
    LinkStatus st;
    st.replicas = in_.u16();
    st.upstream = static_cast<UpstreamState>(in_.u8() % kUpstreamStates);
    x.s->set_status(st);
    x.told.push_back(st);
  }

  // A reload (§5b): 1 .. kMaxPins pins, each filled with a fuzzed byte.
  void do_set_pins(Side& x) {
    std::vector<std::array<uint8_t, kPinSize>> pins(1 + in_.u8() % limits::kMaxPins);
    for (auto& p : pins) p.fill(in_.u8());
    x.s->set_pins(pins);
    x.pins_told.push_back(pins);
  }

  void do_go_away(Side& x) {
    const Code code = in_.pick(kAppCodes);
    x.s->go_away(code);
  }

  void do_transport_closed(Side& x) {
    const bool clean = in_.boolean();
    if (!x.s->dead()) x.transport_closed = true;
    x.s->transport_closed(clean);
  }

  // ---------------------------------------------------------------- pipes
  // Hands up to k bytes of from's output to its peer, as a transport would.
  size_t deliver(Side& from, size_t k) {
    Side& to = peer(from);
    const Bytes out = from.s->output();
    const size_t n = std::min(k, out.size());
    if (n == 0) return 0;
    // `to` copies what it is fed; from's output stays put until output_written().
    // Fed in pieces of at most kFeedPiece, as a transport reads (a TLS record
    // is 16 KiB), not a megabyte at once: the session's input buffer then
    // stays below ASan's large-allocation size, where each run mapped,
    // faulted in and unmapped a fresh buffer for every doubling (perf: the
    // kernel's share of the target's time).
    // Each piece goes in the way a transport's read does (input_space(),
    // then commit_input(): what feed() does, with memcpy for its std::copy,
    // which ASan routes through a byte-at-a-time memmove).
    for (size_t at = 0; at < n;) {
      const Bytes piece = out.subspan(at, std::min(kFeedPiece, n - at));
      const std::span<uint8_t> space = to.s->input_space(piece.size());
      std::memcpy(space.data(), piece.data(), piece.size());
      to.s->commit_input(piece.size(), now_);
      shadow(to, piece);
      at += piece.size();
      // Data spans point into `to`'s input buffer: look at them before the next feed.
      process(to);
    }
    from.s->output_written(n);
    process(from);
    return n;
  }

  void pump(int rounds) {
    for (int i = 0; i < rounds; i++) {
      const size_t n = deliver(a_, SIZE_MAX) + deliver(b_, SIZE_MAX);
      // The application hands on everything it received, in stream id order.
      for (Side* x : {&a_, &b_}) {
        if (x->s->dead()) continue;
        auto& ids = x->unconsumed_ids;
        std::sort(ids.begin(), ids.end());
        ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
        for (uint32_t id : ids) {
          auto it = x->streams.find(id);
          if (it == x->streams.end() || it->second.unconsumed == 0) continue;
          x->s->consume(id, static_cast<size_t>(it->second.unconsumed));
          it->second.unconsumed = 0;
        }
        ids.clear();
      }
      if (n == 0 && !a_.s->has_output() && !b_.s->has_output()) return;
    }
  }

  // Delivers the rest of a frame whose first bytes `to` already has, so that
  // an injected frame lands on a frame boundary.
  void complete_partial_frame(Side& to) {
    if (to.partial.empty() || !to.shadow_ok) return;
    Side& from = peer(to);
    std::vector<uint8_t> head(to.partial);
    const Bytes out = from.s->output();
    head.insert(
        head.end(), out.begin(),
        out.begin() + static_cast<std::ptrdiff_t>(std::min(out.size(), limits::kFrameHeaderSize)));
    if (head.size() < limits::kFrameHeaderSize) return;
    ByteReader rd(head);
    const uint64_t whole = limits::kFrameHeaderSize + uint64_t{rd.u32()};
    if (whole <= to.partial.size()) return;
    deliver(from, static_cast<size_t>(whole - to.partial.size()));
  }

  // Decodes what was delivered to `to` the way it should, and adds up the
  // flow-control grants in it.
  void shadow(Side& to, Bytes chunk) {
    if (!to.shadow_ok) return;
    // Whole frames are decoded from the chunk itself; only a frame cut by
    // the chunk's end is kept (and completed by the next chunk).
    if (!to.partial.empty()) to.partial.insert(to.partial.end(), chunk.begin(), chunk.end());
    const Bytes buf = to.partial.empty() ? chunk : Bytes(to.partial);
    size_t pos = 0;
    for (;;) {
      const DecodeResult r = decode_frame(buf.subspan(pos), to.cfg.max_frame, to.shadow_version);
      if (r.kind == DecodeResult::kNeedMore) break;
      if (r.kind == DecodeResult::kError) {
        FZ_CHECK(!honest_, "%s sent a frame its peer rejects: %s", peer(to).name,
                 std::string(r.error.what).c_str());
        to.shadow_ok = false;
        to.partial.clear();
        return;
      }
      pos += r.consumed;
      const Frame& f = r.frame;
      if (f.h.type == FrameType::kHello) {
        FrameError err{Code::kNoError, ""};
        auto h = parse_hello(f.payload, &err);
        FZ_CHECK(h || !honest_, "%s sent a HELLO its peer rejects", peer(to).name);
        if (h && !to.hello_in) {
          to.hello_in = true;
          to.shadow_version = std::min<uint16_t>(
              h->max_version,
              std::clamp(to.cfg.max_version, kMinProtocolVersion, kProtocolVersion));
          to.peer_stream_window = h->stream_window;
          to.conn_grant += h->conn_window;
        }
      } else if (f.h.type == FrameType::kWindow) {
        const uint32_t inc = parse_u32_payload(f.payload).value_or(0);
        if (f.h.stream == 0)
          to.conn_grant += inc;
        else
          to.credited[f.h.stream] += inc;
      }
    }
    if (to.partial.empty())
      to.partial.assign(chunk.begin() + static_cast<std::ptrdiff_t>(pos), chunk.end());
    else
      to.partial.erase(to.partial.begin(), to.partial.begin() + static_cast<std::ptrdiff_t>(pos));
  }

  // ---------------------------------------------------------------- oracle
  void process(Side& x) {
    const bool opener = x.cfg.opener;
    // The events are looked at in a vector that goes back to the session
    // (cleared) afterwards: take_events() leaves the session a new, empty
    // vector that every event pushed after it grows again from nothing (an
    // allocation per doubling, per action, under ASan).
    std::vector<Event> events = x.s->take_events();
    for (const Event& ev : events) {
      if (trace_)
        std::fprintf(stderr, "  %s event %u stream %u code %s %s\n", x.name,
                     static_cast<unsigned>(ev.kind), ev.stream,
                     std::string(code_name(ev.code)).c_str(), std::string(ev.what).c_str());
      FZ_CHECK(!x.errored, "%s: event %u after the connection error", x.name,
               static_cast<unsigned>(ev.kind));
      auto it = x.streams.find(ev.stream);
      const bool known = ev.stream != 0 && it != x.streams.end();
      if (ev.stream != 0) x.touched.push_back(ev.stream);
      switch (ev.kind) {
        case Event::kPins: {
          FZ_CHECK(x.ready && x.s->version() >= kPinsVersion, "%s: PINS on a version %u connection",
                   x.name, x.s->version());
          const auto& got = x.s->peer_pins();
          FZ_CHECK(got.has_value() && !got->empty() && got->size() <= limits::kMaxPins,
                   "%s: Pins event without a bounded set", x.name);
          if (honest_) {
            const auto& told = peer(x).pins_told;
            FZ_CHECK(std::find(told.begin(), told.end(), *got) != told.end(),
                     "%s: PINS altered on the way", x.name);
          }
          break;
        }
        case Event::kStatus:
          FZ_CHECK(x.ready && x.s->version() >= 2, "%s: STATUS on a version %u connection", x.name,
                   x.s->version());
          FZ_CHECK(x.s->peer_status().has_value(), "%s: Status event without a status", x.name);
          // An honest peer's STATUS is one its application set (or the
          // default, before it set one): never altered on the way.
          if (honest_) {
            const auto& told = peer(x).told;
            FZ_CHECK(std::find(told.begin(), told.end(), *x.s->peer_status()) != told.end(),
                     "%s: STATUS altered on the way", x.name);
          }
          break;
        case Event::kReady:
          FZ_CHECK(!x.ready, "%s: Ready twice", x.name);
          FZ_CHECK(x.s->ready(), "%s: Ready but not ready()", x.name);
          x.ready = true;
          break;
        case Event::kOpened:
          FZ_CHECK(!opener, "%s: the opener got Opened(%u)", x.name, ev.stream);
          FZ_CHECK(x.ready, "%s: Opened before Ready", x.name);
          FZ_CHECK(ev.stream != 0 && !known, "%s: Opened(%u) twice", x.name, ev.stream);
          FZ_CHECK(ev.stream > x.last_opened, "%s: Opened(%u) after %u", x.name, ev.stream,
                   x.last_opened);
          x.last_opened = ev.stream;
          x.streams[ev.stream] = StreamModel{};
          {
            // An origin the session let through is well formed; an honest
            // peer's is the one it sent, and none before version 3.
            std::string_view why;
            auto o = decode_origin(ev.data, &why);
            FZ_CHECK(o.has_value(), "%s: Opened(%u) with a malformed origin", x.name, ev.stream);
            FZ_CHECK(x.s->version() >= kOriginVersion || ev.data.empty(),
                     "%s: an origin on a version %u connection", x.name, x.s->version());
            if (honest_) {
              const bool sent = peer(x).origin_sent.count(ev.stream) != 0;
              FZ_CHECK(sent ? *o == origin_for(ev.stream) : o->empty(),
                       "%s: Opened(%u) with another origin than its opener sent", x.name,
                       ev.stream);
            }
          }
          break;
        case Event::kData: {
          FZ_CHECK(known, "%s: Data for unknown stream %u", x.name, ev.stream);
          StreamModel& st = it->second;
          FZ_CHECK(!st.recv_fin, "%s: Data after Fin on %u", x.name, ev.stream);
          FZ_CHECK(!ev.data.empty() && ev.data.size() <= x.cfg.max_frame, "%s: Data of %zu bytes",
                   x.name, ev.data.size());
          if (honest_ && !is_pattern(ev.stream, st.received, ev.data)) {
            size_t i = 0;
            while (ev.data[i] == pattern(ev.stream, st.received + i)) i++;
            FZ_CHECK(false, "%s: stream %u byte %zu corrupted", x.name, ev.stream,
                     static_cast<size_t>(st.received + i));
          }
          st.received += ev.data.size();
          if (st.unconsumed == 0) x.unconsumed_ids.push_back(ev.stream);
          st.unconsumed += ev.data.size();
          break;
        }
        case Event::kFin:
          FZ_CHECK(known, "%s: Fin for unknown stream %u", x.name, ev.stream);
          FZ_CHECK(!it->second.recv_fin, "%s: Fin twice on %u", x.name, ev.stream);
          it->second.recv_fin = true;
          if (it->second.sent_fin) x.streams.erase(it);
          break;
        case Event::kReset:
          FZ_CHECK(known, "%s: Reset for unknown stream %u", x.name, ev.stream);
          FZ_CHECK(!honest_ || ev.code == Code::kRefused || is_app_code(ev.code),
                   "%s: stream %u reset with %s in an honest run (%s)", x.name, ev.stream,
                   std::string(code_name(ev.code)).c_str(), std::string(ev.what).c_str());
          x.streams.erase(it);
          break;
        case Event::kWritable:
          FZ_CHECK(known, "%s: Writable for unknown stream %u", x.name, ev.stream);
          break;
        case Event::kGoAway:
          break;
        case Event::kError: {
          FZ_CHECK(x.s->dead(), "%s: Error but not dead()", x.name);
          x.errored = true;
          const Code c = ev.code;
          const bool expected = c == Code::kTimeout || c == Code::kEnhanceYourCalm ||
                                (x.transport_closed && (c == Code::kNoError || c == Code::kCancel ||
                                                        c == Code::kTruncated));
          FZ_CHECK(!honest_ || expected, "%s: connection error %s in an honest run (%s)", x.name,
                   std::string(code_name(c)).c_str(), std::string(ev.what).c_str());
          break;
        }
      }
    }
    // Nothing above calls into the session but its const accessors.
    FZ_CHECK(x.s->events().empty(), "%s: events while the last ones were looked at", x.name);
    events.clear();
    x.s->events().swap(events);
  }

  // `st`: the model of stream `id`, null when the application does not know it.
  void check_capacity(Side& x, uint32_t id, const StreamModel* st, size_t cap) {
    FZ_CHECK(cap <= limits::kMaxWindow, "%s: capacity %zu", x.name, cap);
    FZ_CHECK(cap <= limits::kOutputHighWater, "%s: capacity %zu over high water", x.name, cap);
    if (st == nullptr || x.s->dead() || st->sent_fin) {
      FZ_CHECK(cap == 0, "%s: capacity %zu on stream %u that cannot send", x.name, cap, id);
      return;
    }
    if (!honest_ || !x.shadow_ok) return;
    if (!x.hello_in) {
      FZ_CHECK(cap == 0, "%s: capacity %zu before the peer's HELLO arrived", x.name, cap);
      return;
    }
    const auto credit = x.credited.find(id);
    const uint64_t stream_grant =
        uint64_t{x.peer_stream_window} + (credit == x.credited.end() ? 0 : credit->second);
    FZ_CHECK(st->sent <= stream_grant && x.sent_total <= x.conn_grant,
             "%s: sent beyond the windows granted", x.name);
    FZ_CHECK(cap <= stream_grant - st->sent,
             "%s: capacity %zu on stream %u over its window (%llu left)", x.name, cap, id,
             static_cast<unsigned long long>(stream_grant - st->sent));
    FZ_CHECK(cap <= x.conn_grant - x.sent_total,
             "%s: capacity %zu over the connection window (%llu left)", x.name, cap,
             static_cast<unsigned long long>(x.conn_grant - x.sent_total));
  }

  // Every stream when `all`, or while a side holds at most kSweepAll; else
  // the touched ones and the next kSweepAll from the cursor.
  void check(Side& x, bool all = false) {
    Session& s = *x.s;
    FZ_CHECK(s.dead() == x.errored, "%s: dead() without an Error event", x.name);
    FZ_CHECK(s.ready() == x.ready, "%s: ready() without a Ready event", x.name);
    FZ_CHECK(s.open_streams() <= limits::kMaxConcurrentStreams, "%s: %zu open streams", x.name,
             s.open_streams());
    if (!x.cfg.opener)
      FZ_CHECK(s.open_streams() <= x.cfg.max_streams, "%s: %zu streams, limit %u", x.name,
               s.open_streams(), x.cfg.max_streams);
    FZ_CHECK(s.open_streams() == x.streams.size(), "%s: session has %zu streams, app knows %zu",
             x.name, s.open_streams(), x.streams.size());
    auto& touched = x.touched;
    if (all || x.streams.size() <= kSweepAll) {
      for (auto& [id, st] : x.streams) check_stream(x, id, st);
      touched.clear();
      return;
    }
    std::sort(touched.begin(), touched.end());
    touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
    for (uint32_t id : touched) {
      auto it = x.streams.find(id);
      if (it != x.streams.end()) check_stream(x, id, it->second);
    }
    touched.clear();
    auto it = x.streams.lower_bound(x.sweep_from);
    for (size_t n = 0; n < kSweepAll; n++, ++it) {
      if (it == x.streams.end()) it = x.streams.begin();
      check_stream(x, it->first, it->second);
    }
    x.sweep_from = it == x.streams.end() ? 0 : it->first;
  }

  void check_stream(Side& x, uint32_t id, const StreamModel& st) {
    Session& s = *x.s;
    const std::optional<StreamState> state = s.stream_state(id);
    FZ_CHECK(state.has_value(), "%s: stream %u vanished without an event", x.name, id);
    const StreamState want = st.sent_fin   ? StreamState::kHalfClosedLocal
                             : st.recv_fin ? StreamState::kHalfClosedRemote
                                           : StreamState::kOpen;
    FZ_CHECK(*state == want, "%s: stream %u is %s, the app expects %s", x.name, id,
             std::string(stream_state_name(*state)).c_str(),
             std::string(stream_state_name(want)).c_str());
    check_capacity(x, id, &st, s.send_capacity(id));
  }

  void final_check() {
    if (!honest_ || a_.s->dead() || b_.s->dead() || a_.s->has_output() || b_.s->has_output())
      return;
    // Everything sent on a stream both sides still hold has arrived.
    for (auto& [id, st] : a_.streams) {
      auto it = b_.streams.find(id);
      if (it == b_.streams.end()) continue;
      FZ_CHECK(it->second.received == st.sent, "stream %u: broker sent %llu, bridge got %llu", id,
               static_cast<unsigned long long>(st.sent),
               static_cast<unsigned long long>(it->second.received));
      FZ_CHECK(st.received == it->second.sent, "stream %u: bridge sent %llu, broker got %llu", id,
               static_cast<unsigned long long>(it->second.sent),
               static_cast<unsigned long long>(st.received));
    }
  }

  FuzzInput& in_;
  // SESSION_FUZZ_TRACE=1 prints every action and event (to read a reproducer).
  const bool trace_ = std::getenv("SESSION_FUZZ_TRACE") != nullptr;
  TimePoint now_ = TimePoint{} + std::chrono::hours(1);
  Side a_, b_;
  bool honest_ = true;
};

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  pattern_tables();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzInput in(Bytes(data, size));
  Harness h(in);
  h.run();
  return 0;
}
