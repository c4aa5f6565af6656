#include "shared/wire/frame.h"

#include "shared/base/check.h"

namespace ct {

namespace {

// Per-type bounds (docs/protocol.md §1): the one table every header is
// checked against before its payload is buffered.
struct TypeRule {
  uint32_t min_len;
  uint32_t max_len;  // 0 means "up to the advertised max payload"
  uint8_t flags;     // allowed flag bits
  enum StreamKind : uint8_t { kZero, kNonZero, kAny } stream;
};

constexpr TypeRule kRules[] = {
    /* HELLO  */ {kHelloSize, kHelloSize, 0, TypeRule::kZero},
    /* OPEN   */ {0, 0, 0, TypeRule::kNonZero},
    /* DATA   */ {0, 0, kFlagFin, TypeRule::kNonZero},
    /* WINDOW */ {4, 4, 0, TypeRule::kAny},
    /* RESET  */ {4, 4, 0, TypeRule::kNonZero},
    /* PING   */ {8, 8, kFlagAck, TypeRule::kZero},
    /* GOAWAY */ {8, 8, 0, TypeRule::kZero},
    /* STATUS */ {kStatusSize, kStatusSize, 0, TypeRule::kZero},
    /* PINS   */ {1 + kPinSize, kMaxPinsPayload, 0, TypeRule::kZero},
};
constexpr size_t kNumTypes = sizeof(kRules) / sizeof(kRules[0]);

}  // namespace

std::string_view code_name(Code c) {
  switch (c) {
    case Code::kNoError:
      return "NO_ERROR";
    case Code::kProtocol:
      return "PROTOCOL";
    case Code::kInternal:
      return "INTERNAL";
    case Code::kFlowControl:
      return "FLOW_CONTROL";
    case Code::kTimeout:
      return "TIMEOUT";
    case Code::kStreamClosed:
      return "STREAM_CLOSED";
    case Code::kFrameSize:
      return "FRAME_SIZE";
    case Code::kRefused:
      return "REFUSED";
    case Code::kCancel:
      return "CANCEL";
    case Code::kEnhanceYourCalm:
      return "ENHANCE_YOUR_CALM";
    case Code::kVersion:
      return "VERSION";
    case Code::kUpstreamRefused:
      return "UPSTREAM_REFUSED";
    case Code::kUpstreamReset:
      return "UPSTREAM_RESET";
    case Code::kNoBridge:
      return "NO_BRIDGE";
    case Code::kShutdown:
      return "SHUTDOWN";
    case Code::kResource:
      return "RESOURCE";
    case Code::kWrapperTls:
      return "WRAPPER_TLS";
    case Code::kTruncated:
      return "TRUNCATED";
    case Code::kDuplicateLink:
      return "DUPLICATE_LINK";
  }
  return "UNKNOWN";
}

std::string_view frame_type_name(FrameType t) {
  switch (t) {
    case FrameType::kHello:
      return "HELLO";
    case FrameType::kOpen:
      return "OPEN";
    case FrameType::kData:
      return "DATA";
    case FrameType::kWindow:
      return "WINDOW";
    case FrameType::kReset:
      return "RESET";
    case FrameType::kPing:
      return "PING";
    case FrameType::kGoAway:
      return "GOAWAY";
    case FrameType::kStatus:
      return "STATUS";
    case FrameType::kPins:
      return "PINS";
  }
  return "UNKNOWN";
}

std::string instance_name(const std::array<uint8_t, 16>& id) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (size_t i = 0; i < 8; i++) {
    out += kHex[id[i] >> 4];
    out += kHex[id[i] & 15];
  }
  return out;
}

std::string_view upstream_state_name(UpstreamState s) {
  switch (s) {
    case UpstreamState::kUnknown:
      return "unknown";
    case UpstreamState::kActive:
      return "active";
    case UpstreamState::kStandby:
      return "standby";
    case UpstreamState::kPerfStandby:
      return "perf_standby";
    case UpstreamState::kSealed:
      return "sealed";
    case UpstreamState::kUninitialized:
      return "uninitialized";
    case UpstreamState::kUnreachable:
      return "unreachable";
  }
  return "invalid";
}

std::optional<FrameError> check_header(const FrameHeader& h, uint32_t max_payload,
                                       uint16_t version) {
  const auto t = static_cast<size_t>(h.type);
  if (t >= kNumTypes) return FrameError{Code::kProtocol, "unknown frame type"};
  const TypeRule& r = kRules[t];
  uint32_t max_len = r.max_len;
  if (h.type == FrameType::kData) max_len = max_payload;
  if (h.type == FrameType::kOpen && version >= kOriginVersion) max_len = limits::kMaxOriginPayload;
  if (h.length < r.min_len || h.length > max_len)
    return FrameError{Code::kFrameSize, "frame length outside the bounds of its type"};
  if ((h.flags & ~r.flags) != 0) return FrameError{Code::kProtocol, "undefined flag bits"};
  if ((h.stream & 0x80000000u) != 0)
    return FrameError{Code::kProtocol, "reserved bit of stream id set"};
  if (r.stream == TypeRule::kZero && h.stream != 0)
    return FrameError{Code::kProtocol, "connection frame with a stream id"};
  if (r.stream == TypeRule::kNonZero && h.stream == 0)
    return FrameError{Code::kProtocol, "stream frame with stream id 0"};
  if (h.type == FrameType::kData && h.length == 0 && (h.flags & kFlagFin) == 0)
    return FrameError{Code::kProtocol, "empty DATA frame without FIN"};
  return std::nullopt;
}

DecodeResult decode_frame(Bytes in, uint32_t max_payload, uint16_t version) {
  DecodeResult r;
  if (in.size() < limits::kFrameHeaderSize) return r;  // kNeedMore
  ByteReader rd(in);
  FrameHeader h;
  h.length = rd.u32();
  const uint8_t type = rd.u8();
  h.flags = rd.u8();
  h.stream = rd.u32();
  if (type >= kNumTypes) {
    r.kind = DecodeResult::kError;
    r.error = {Code::kProtocol, "unknown frame type"};
    return r;
  }
  h.type = static_cast<FrameType>(type);
  if (auto err = check_header(h, max_payload, version)) {
    r.kind = DecodeResult::kError;
    r.error = *err;
    return r;
  }
  if (rd.remaining() < h.length) return r;  // kNeedMore, header already vetted
  r.kind = DecodeResult::kFrame;
  r.frame.h = h;
  r.frame.payload = rd.bytes(h.length);
  r.consumed = limits::kFrameHeaderSize + h.length;
  return r;
}

std::optional<Hello> parse_hello(Bytes payload, FrameError* err) {
  ByteReader rd(payload);
  Hello h;
  auto fail = [&](Code c, std::string_view what) -> std::optional<Hello> {
    if (err) *err = {c, what};
    return std::nullopt;
  };
  if (rd.str(4) != "CTRC") return fail(Code::kProtocol, "bad HELLO magic");
  h.min_version = rd.u16();
  h.max_version = rd.u16();
  const uint8_t role = rd.u8();
  const uint8_t flags = rd.u8();
  const uint16_t reserved = rd.u16();
  h.stream_window = rd.u32();
  h.conn_window = rd.u32();
  h.max_streams = rd.u32();
  h.max_frame = rd.u32();
  rd.copy_to(h.instance);
  if (!rd.finish()) return fail(Code::kFrameSize, "HELLO size");
  if (role < 1 || role > 4) return fail(Code::kProtocol, "bad HELLO role");
  h.role = static_cast<Role>(role);
  if ((flags & ~kHelloFlagOpener) != 0 || reserved != 0)
    return fail(Code::kProtocol, "reserved HELLO bits set");
  h.opener = (flags & kHelloFlagOpener) != 0;
  if (h.min_version == 0 || h.min_version > h.max_version)
    return fail(Code::kProtocol, "bad HELLO version range");
  if (h.min_version > kProtocolVersion || h.max_version < kMinProtocolVersion)
    return fail(Code::kVersion, "no common protocol version");
  if (h.stream_window == 0 || h.stream_window > limits::kMaxWindow || h.conn_window == 0 ||
      h.conn_window > limits::kMaxWindow)
    return fail(Code::kProtocol, "HELLO window out of range");
  if (h.max_streams == 0) return fail(Code::kProtocol, "HELLO max streams is 0");
  if (h.max_frame < limits::kMinFramePayload || h.max_frame > limits::kMaxFramePayload)
    return fail(Code::kProtocol, "HELLO max frame out of range");
  return h;
}

std::optional<uint32_t> parse_u32_payload(Bytes payload) {
  ByteReader rd(payload);
  uint32_t v = rd.u32();
  if (!rd.finish()) return std::nullopt;
  return v;
}

std::optional<GoAway> parse_goaway(Bytes payload) {
  ByteReader rd(payload);
  GoAway g{rd.u32(), rd.u32()};
  if (!rd.finish()) return std::nullopt;
  return g;
}

std::optional<LinkStatus> parse_status(Bytes payload, FrameError* err) {
  ByteReader rd(payload);
  LinkStatus s;
  s.replicas = rd.u16();
  const uint8_t flags = rd.u8();
  const uint8_t upstream = rd.u8();
  const uint32_t reserved = rd.u32();
  auto fail = [&](Code c, std::string_view what) -> std::optional<LinkStatus> {
    if (err) *err = {c, what};
    return std::nullopt;
  };
  if (!rd.finish()) return fail(Code::kFrameSize, "STATUS size");
  if (flags != 0 || reserved != 0) return fail(Code::kProtocol, "reserved STATUS bits set");
  if (upstream >= kUpstreamStates) return fail(Code::kProtocol, "unknown STATUS upstream state");
  s.upstream = static_cast<UpstreamState>(upstream);
  return s;
}

std::optional<std::vector<std::array<uint8_t, kPinSize>>> parse_pins(Bytes payload,
                                                                     FrameError* err) {
  using Pins = std::vector<std::array<uint8_t, kPinSize>>;
  auto fail = [&](std::string_view what) -> std::optional<Pins> {
    if (err) *err = {Code::kProtocol, what};
    return std::nullopt;
  };
  ByteReader rd(payload);
  const uint8_t count = rd.u8();
  if (count == 0 || count > limits::kMaxPins) return fail("PINS count out of range");
  if (payload.size() != 1 + size_t{count} * kPinSize)
    return fail("PINS length does not match its count");
  Pins pins(count);
  for (auto& p : pins) rd.copy_to(p);
  if (!rd.finish()) return fail("PINS length does not match its count");
  return pins;
}

void encode_header(std::vector<uint8_t>& out, uint32_t length, FrameType t, uint8_t flags,
                   uint32_t stream) {
  ByteWriter w(out, SIZE_MAX);
  w.u32(length);
  w.u8(static_cast<uint8_t>(t));
  w.u8(flags);
  w.u32(stream);
}

void encode_hello(std::vector<uint8_t>& out, const Hello& h) {
  encode_header(out, kHelloSize, FrameType::kHello, 0, 0);
  ByteWriter w(out, SIZE_MAX);
  w.str("CTRC");
  w.u16(h.min_version);
  w.u16(h.max_version);
  w.u8(static_cast<uint8_t>(h.role));
  w.u8(h.opener ? kHelloFlagOpener : 0);
  w.u16(0);
  w.u32(h.stream_window);
  w.u32(h.conn_window);
  w.u32(h.max_streams);
  w.u32(h.max_frame);
  w.bytes(h.instance);
}

void encode_status(std::vector<uint8_t>& out, const LinkStatus& s) {
  encode_header(out, kStatusSize, FrameType::kStatus, 0, 0);
  ByteWriter w(out, SIZE_MAX);
  w.u16(s.replicas);
  w.u8(0);
  w.u8(static_cast<uint8_t>(s.upstream));
  w.u32(0);
}

void encode_pins(std::vector<uint8_t>& out,
                 const std::vector<std::array<uint8_t, kPinSize>>& pins) {
  CT_CHECK(!pins.empty() && pins.size() <= limits::kMaxPins);
  encode_header(out, static_cast<uint32_t>(1 + pins.size() * kPinSize), FrameType::kPins, 0, 0);
  ByteWriter w(out, SIZE_MAX);
  w.u8(static_cast<uint8_t>(pins.size()));
  for (const auto& p : pins) w.bytes(p);
}

void encode_open(std::vector<uint8_t>& out, uint32_t stream, Bytes origin) {
  encode_header(out, static_cast<uint32_t>(origin.size()), FrameType::kOpen, 0, stream);
  out.insert(out.end(), origin.begin(), origin.end());
}

void encode_data(std::vector<uint8_t>& out, uint32_t stream, Bytes data, bool fin) {
  encode_header(out, static_cast<uint32_t>(data.size()), FrameType::kData, fin ? kFlagFin : 0,
                stream);
  out.insert(out.end(), data.begin(), data.end());
}

void encode_window(std::vector<uint8_t>& out, uint32_t stream, uint32_t increment) {
  encode_header(out, 4, FrameType::kWindow, 0, stream);
  ByteWriter(out, SIZE_MAX).u32(increment);
}

void encode_reset(std::vector<uint8_t>& out, uint32_t stream, Code code) {
  encode_header(out, 4, FrameType::kReset, 0, stream);
  ByteWriter(out, SIZE_MAX).u32(static_cast<uint32_t>(code));
}

void encode_ping(std::vector<uint8_t>& out, uint64_t opaque, bool ack) {
  encode_header(out, 8, FrameType::kPing, ack ? kFlagAck : 0, 0);
  ByteWriter(out, SIZE_MAX).u64(opaque);
}

void encode_goaway(std::vector<uint8_t>& out, uint32_t last_stream, Code code) {
  encode_header(out, 8, FrameType::kGoAway, 0, 0);
  ByteWriter w(out, SIZE_MAX);
  w.u32(last_stream);
  w.u32(static_cast<uint32_t>(code));
}

}  // namespace ct
