// Frame codec (docs/protocol.md §1, §2): every type round-trips, every header
// is checked against the per-type table before any payload is buffered, and
// HELLO fields are range-checked.
#include "shared/wire/frame.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ct {
namespace {

constexpr uint32_t kMax = limits::kMaxFramePayload;
// The version 1 and 2 table (OPEN exactly 0 bytes); version 3 is tested apart.
constexpr uint16_t kV2 = 2;

std::vector<uint8_t> header(uint32_t length, uint8_t type, uint8_t flags, uint32_t stream) {
  std::vector<uint8_t> out;
  ByteWriter w(out, 64);
  w.u32(length);
  w.u8(type);
  w.u8(flags);
  w.u32(stream);
  return out;
}

DecodeResult decode_one(const std::vector<uint8_t>& b, uint32_t max_payload = kMax) {
  return decode_frame(b, max_payload, kV2);
}

// Decodes a buffer holding exactly one frame and checks it was consumed whole.
Frame decode_exact(const std::vector<uint8_t>& b) {
  DecodeResult r = decode_frame(b, kMax, kV2);
  EXPECT_EQ(r.kind, DecodeResult::kFrame) << r.error.what;
  EXPECT_EQ(r.consumed, b.size());
  EXPECT_EQ(r.frame.payload.size() + limits::kFrameHeaderSize, b.size());
  return r.frame;
}

// ------------------------------------------------------------------ round trips

TEST(FrameCodec, HelloRoundTrip) {
  Hello h;
  h.min_version = 1;
  h.max_version = 1;
  h.role = Role::kBridge;
  h.opener = true;
  h.stream_window = 12345;
  h.conn_window = limits::kMaxWindow;
  h.max_streams = 7;
  h.max_frame = limits::kMinFramePayload;
  for (size_t i = 0; i < h.instance.size(); i++) h.instance[i] = static_cast<uint8_t>(i * 3 + 1);
  std::vector<uint8_t> out;
  encode_hello(out, h);
  ASSERT_EQ(out.size(), limits::kFrameHeaderSize + kHelloSize);
  Frame f = decode_exact(out);
  EXPECT_EQ(f.h.type, FrameType::kHello);
  EXPECT_EQ(f.h.stream, 0u);
  EXPECT_EQ(f.h.flags, 0);
  FrameError err{Code::kNoError, ""};
  auto got = parse_hello(f.payload, &err);
  ASSERT_TRUE(got.has_value()) << err.what;
  EXPECT_EQ(got->min_version, 1);
  EXPECT_EQ(got->max_version, 1);
  EXPECT_EQ(got->role, Role::kBridge);
  EXPECT_TRUE(got->opener);
  EXPECT_EQ(got->stream_window, 12345u);
  EXPECT_EQ(got->conn_window, limits::kMaxWindow);
  EXPECT_EQ(got->max_streams, 7u);
  EXPECT_EQ(got->max_frame, limits::kMinFramePayload);
  EXPECT_EQ(got->instance, h.instance);
  // The magic is on the wire where the spec puts it.
  EXPECT_EQ(std::string(out.begin() + 10, out.begin() + 14), "CTRC");
}

TEST(FrameCodec, HelloRoundTripEveryRole) {
  for (Role role : {Role::kBroker, Role::kBridge, Role::kTlsProcess, Role::kForwardProcess}) {
    for (bool opener : {false, true}) {
      Hello h;
      h.role = role;
      h.opener = opener;
      std::vector<uint8_t> out;
      encode_hello(out, h);
      Frame f = decode_exact(out);
      auto got = parse_hello(f.payload, nullptr);
      ASSERT_TRUE(got.has_value());
      EXPECT_EQ(got->role, role);
      EXPECT_EQ(got->opener, opener);
    }
  }
}

TEST(FrameCodec, OpenRoundTrip) {
  std::vector<uint8_t> out;
  encode_open(out, 42);
  EXPECT_EQ(out, header(0, 1, 0, 42));
  Frame f = decode_exact(out);
  EXPECT_EQ(f.h.type, FrameType::kOpen);
  EXPECT_EQ(f.h.stream, 42u);
  EXPECT_TRUE(f.payload.empty());
}

TEST(FrameCodec, DataRoundTrip) {
  const std::string payload = "some stream bytes";
  for (bool fin : {false, true}) {
    std::vector<uint8_t> out;
    encode_data(out, limits::kMaxStreamId, as_bytes(payload), fin);
    Frame f = decode_exact(out);
    EXPECT_EQ(f.h.type, FrameType::kData);
    EXPECT_EQ(f.h.stream, limits::kMaxStreamId);
    EXPECT_EQ(f.h.flags, fin ? kFlagFin : 0);
    EXPECT_EQ(std::string(f.payload.begin(), f.payload.end()), payload);
  }
}

TEST(FrameCodec, DataMaxPayloadAndEmptyFin) {
  std::vector<uint8_t> big(kMax, 0x5a);
  std::vector<uint8_t> out;
  encode_data(out, 1, big, false);
  Frame f = decode_exact(out);
  EXPECT_EQ(f.payload.size(), kMax);

  std::vector<uint8_t> fin;
  encode_data(fin, 3, {}, true);
  Frame g = decode_exact(fin);
  EXPECT_EQ(g.h.flags, kFlagFin);
  EXPECT_TRUE(g.payload.empty());
}

TEST(FrameCodec, WindowRoundTrip) {
  for (uint32_t stream : {0u, 9u}) {
    std::vector<uint8_t> out;
    encode_window(out, stream, 0x7ffffffe);
    Frame f = decode_exact(out);
    EXPECT_EQ(f.h.type, FrameType::kWindow);
    EXPECT_EQ(f.h.stream, stream);
    EXPECT_EQ(parse_u32_payload(f.payload), 0x7ffffffeu);
  }
}

TEST(FrameCodec, ResetRoundTrip) {
  std::vector<uint8_t> out;
  encode_reset(out, 5, Code::kUpstreamRefused);
  Frame f = decode_exact(out);
  EXPECT_EQ(f.h.type, FrameType::kReset);
  EXPECT_EQ(f.h.stream, 5u);
  EXPECT_EQ(parse_u32_payload(f.payload), static_cast<uint32_t>(Code::kUpstreamRefused));
}

TEST(FrameCodec, PingRoundTrip) {
  for (bool ack : {false, true}) {
    std::vector<uint8_t> out;
    encode_ping(out, 0x0102030405060708ull, ack);
    Frame f = decode_exact(out);
    EXPECT_EQ(f.h.type, FrameType::kPing);
    EXPECT_EQ(f.h.flags, ack ? kFlagAck : 0);
    ByteReader r(f.payload);
    EXPECT_EQ(r.u64(), 0x0102030405060708ull);
    EXPECT_TRUE(r.finish());
  }
}

TEST(FrameCodec, GoAwayRoundTrip) {
  std::vector<uint8_t> out;
  encode_goaway(out, 77, Code::kShutdown);
  Frame f = decode_exact(out);
  EXPECT_EQ(f.h.type, FrameType::kGoAway);
  auto g = parse_goaway(f.payload);
  ASSERT_TRUE(g.has_value());
  EXPECT_EQ(g->last_stream, 77u);
  EXPECT_EQ(g->code, static_cast<uint32_t>(Code::kShutdown));
}

TEST(FrameCodec, SeveralFramesInOneBufferDecodeOneAtATime) {
  std::vector<uint8_t> out;
  encode_open(out, 1);
  encode_data(out, 1, as_bytes("abc"), true);
  encode_ping(out, 9, false);
  std::vector<FrameType> types;
  Bytes rest(out);
  while (!rest.empty()) {
    DecodeResult r = decode_frame(rest, kMax, kV2);
    ASSERT_EQ(r.kind, DecodeResult::kFrame);
    types.push_back(r.frame.h.type);
    rest = rest.subspan(r.consumed);
  }
  EXPECT_EQ(types, (std::vector<FrameType>{FrameType::kOpen, FrameType::kData, FrameType::kPing}));
}

TEST(FrameCodec, PayloadParsersConsumeExactly) {
  const std::vector<uint8_t> three = {0, 0, 1};
  const std::vector<uint8_t> five = {0, 0, 0, 1, 0};
  EXPECT_FALSE(parse_u32_payload(three).has_value());
  EXPECT_FALSE(parse_u32_payload(five).has_value());
  const std::vector<uint8_t> seven(7, 0), nine(9, 0), eight(8, 0);
  EXPECT_FALSE(parse_goaway(seven).has_value());
  EXPECT_FALSE(parse_goaway(nine).has_value());
  EXPECT_TRUE(parse_goaway(eight).has_value());
}

TEST(FrameCodec, Names) {
  EXPECT_EQ(code_name(Code::kEnhanceYourCalm), "ENHANCE_YOUR_CALM");
  EXPECT_EQ(code_name(Code::kTruncated), "TRUNCATED");
  EXPECT_EQ(code_name(static_cast<Code>(999)), "UNKNOWN");
  EXPECT_EQ(frame_type_name(FrameType::kGoAway), "GOAWAY");
  EXPECT_EQ(frame_type_name(FrameType::kStatus), "STATUS");
  EXPECT_EQ(frame_type_name(FrameType::kPins), "PINS");
  EXPECT_EQ(frame_type_name(static_cast<FrameType>(9)), "UNKNOWN");
  EXPECT_EQ(code_name(Code::kDuplicateLink), "DUPLICATE_LINK");
  EXPECT_EQ(upstream_state_name(UpstreamState::kPerfStandby), "perf_standby");
  EXPECT_EQ(instance_name({0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, 0xff}),
            "0123456789abcdef");
}

// ------------------------------------------------------------------ header table (F-01, F-02,
// F-07)

struct Bounds {
  uint8_t type;
  uint32_t min, max;
  uint8_t flags;    // a legal flag set (DATA needs FIN when empty)
  uint32_t stream;  // a legal stream id
};
const Bounds kTable[] = {
    {0, 44, 44, 0, 0}, {1, 0, 0, 0, 1}, {2, 0, kMax, kFlagFin, 1}, {3, 4, 4, 0, 0},
    {3, 4, 4, 0, 1},   {4, 4, 4, 0, 1}, {5, 8, 8, 0, 0},           {6, 8, 8, 0, 0},
};

// A header alone decides: a legal one asks for its payload (or is complete),
// an illegal one is an error as soon as its 10 bytes are in.
void expect_header_verdict(const Bounds& b, uint32_t length, bool legal, uint32_t max_payload) {
  SCOPED_TRACE("type " + std::to_string(b.type) + " length " + std::to_string(length));
  FrameHeader h{length, static_cast<FrameType>(b.type), b.flags, b.stream};
  auto err = check_header(h, max_payload, kV2);
  DecodeResult r = decode_one(header(length, b.type, b.flags, b.stream), max_payload);
  if (legal) {
    EXPECT_FALSE(err.has_value()) << err->what;
    EXPECT_EQ(r.kind, length == 0 ? DecodeResult::kFrame : DecodeResult::kNeedMore);
  } else {
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code, Code::kFrameSize);
    ASSERT_EQ(r.kind, DecodeResult::kError);
    EXPECT_EQ(r.error.code, Code::kFrameSize);
  }
}

TEST(FrameHeaderCheck, F01_F02_F07_EveryLengthBoundOfTheTable) {
  for (const Bounds& b : kTable) {
    if (b.min > 0) expect_header_verdict(b, b.min - 1, false, kMax);
    expect_header_verdict(b, b.min, true, kMax);
    expect_header_verdict(b, b.max, true, kMax);
    expect_header_verdict(b, b.max + 1, false, kMax);
    expect_header_verdict(b, 0xFFFFFFFFu, false, kMax);
    expect_header_verdict(b, 0x80000000u, false, kMax);
  }
}

TEST(FrameHeaderCheck, F01_DataBoundIsTheAdvertisedMax) {
  const Bounds data{2, 0, 0, 0, 1};
  expect_header_verdict(data, 1024, true, 1024);
  expect_header_verdict(data, 1025, false, 1024);
  expect_header_verdict(data, kMax, false, 1024);
}

// The error comes before any payload: a header claiming 4 GiB is refused with
// only its 10 bytes present, so nothing is ever buffered for it.
TEST(FrameHeaderCheck, F02_HugeLengthRefusedBeforePayload) {
  DecodeResult r = decode_one(header(0xFFFFFFFFu, 2, 0, 1));
  ASSERT_EQ(r.kind, DecodeResult::kError);
  EXPECT_EQ(r.error.code, Code::kFrameSize);
  EXPECT_EQ(r.consumed, 0u);
  // Also with a few payload bytes after it.
  auto b = header(kMax + 1, 2, 0, 1);
  b.resize(b.size() + 100, 0);
  EXPECT_EQ(decode_one(b).kind, DecodeResult::kError);
}

TEST(FrameHeaderCheck, F09_UndefinedFlagBits) {
  for (const Bounds& b : kTable) {
    const uint8_t allowed = (b.type == 2 || b.type == 5) ? 0x01 : 0x00;
    for (int bit = 0; bit < 8; bit++) {
      const auto flag = static_cast<uint8_t>(1u << bit);
      const uint32_t length = b.type == 2 ? 1 : b.min;  // DATA: non-empty, FIN or not
      FrameHeader h{length, static_cast<FrameType>(b.type), flag, b.stream};
      auto err = check_header(h, kMax, kV2);
      SCOPED_TRACE("type " + std::to_string(b.type) + " flag " + std::to_string(flag));
      if ((flag & allowed) != 0) {
        EXPECT_FALSE(err.has_value());
      } else {
        ASSERT_TRUE(err.has_value());
        EXPECT_EQ(err->code, Code::kProtocol);
      }
    }
  }
  // And through the decoder, every bit of OPEN.
  for (int bit = 0; bit < 8; bit++) {
    DecodeResult r = decode_one(header(0, 1, static_cast<uint8_t>(1u << bit), 1));
    ASSERT_EQ(r.kind, DecodeResult::kError);
    EXPECT_EQ(r.error.code, Code::kProtocol);
  }
}

TEST(FrameHeaderCheck, F09_ReservedStreamBit) {
  for (const Bounds& b : kTable) {
    const uint32_t length = b.type == 2 ? 1 : b.min;
    const uint32_t stream = b.stream | 0x80000000u;
    DecodeResult r = decode_one(header(length, b.type, 0, stream));
    SCOPED_TRACE("type " + std::to_string(b.type));
    ASSERT_EQ(r.kind, DecodeResult::kError);
    EXPECT_EQ(r.error.code, Code::kProtocol);
  }
}

TEST(FrameHeaderCheck, F12_StreamIdKind) {
  struct Case {
    uint8_t type;
    uint32_t length;
    uint8_t flags;
    uint32_t stream;
    bool legal;
  };
  const Case cases[] = {
      {0, 44, 0, 1, false}, {0, 44, 0, 0, true},          // HELLO: 0 only
      {1, 0, 0, 0, false},  {1, 0, 0, 1, true},           // OPEN: non-zero
      {2, 1, 0, 0, false},  {2, 1, 0, 0x7fffffff, true},  // DATA: non-zero
      {3, 4, 0, 0, true},   {3, 4, 0, 0x7fffffff, true},  // WINDOW: any
      {4, 4, 0, 0, false},  {4, 4, 0, 2, true},           // RESET: non-zero
      {5, 8, 0, 3, false},  {5, 8, 0, 0, true},           // PING: 0 only
      {6, 8, 0, 4, false},  {6, 8, 0, 0, true},           // GOAWAY: 0 only
  };
  for (const Case& c : cases) {
    SCOPED_TRACE("type " + std::to_string(c.type) + " stream " + std::to_string(c.stream));
    auto err =
        check_header({c.length, static_cast<FrameType>(c.type), c.flags, c.stream}, kMax, kV2);
    EXPECT_EQ(err.has_value(), !c.legal);
    if (err) {
      EXPECT_EQ(err->code, Code::kProtocol);
    }
  }
}

TEST(FrameHeaderCheck, F22_EmptyDataWithoutFin) {
  DecodeResult r = decode_one(header(0, 2, 0, 1));
  ASSERT_EQ(r.kind, DecodeResult::kError);
  EXPECT_EQ(r.error.code, Code::kProtocol);
  DecodeResult ok = decode_one(header(0, 2, kFlagFin, 1));
  EXPECT_EQ(ok.kind, DecodeResult::kFrame);
  EXPECT_EQ(ok.consumed, limits::kFrameHeaderSize);
}

TEST(FrameHeaderCheck, F08_UnknownType) {
  for (int type : {9, 10, 0x7f, 0x80, 0xff}) {
    DecodeResult r = decode_one(header(0, static_cast<uint8_t>(type), 0, 0));
    ASSERT_EQ(r.kind, DecodeResult::kError) << type;
    EXPECT_EQ(r.error.code, Code::kProtocol);
    auto err = check_header({0, static_cast<FrameType>(type), 0, 0}, kMax, kV2);
    ASSERT_TRUE(err.has_value());
    EXPECT_EQ(err->code, Code::kProtocol);
  }
}

TEST(FrameDecode, PartialHeaderNeedsMore) {
  std::vector<uint8_t> full;
  encode_ping(full, 1, false);
  for (size_t n = 0; n < limits::kFrameHeaderSize; n++) {
    DecodeResult r = decode_frame(Bytes(full).first(n), kMax, kV2);
    EXPECT_EQ(r.kind, DecodeResult::kNeedMore) << n;
    EXPECT_EQ(r.consumed, 0u);
  }
  // Even a bad header is not judged before all 10 bytes are in.
  auto bad = header(0xFFFFFFFFu, 0xff, 0xff, 0xFFFFFFFFu);
  EXPECT_EQ(decode_frame(Bytes(bad).first(9), kMax, kV2).kind, DecodeResult::kNeedMore);
  EXPECT_EQ(decode_frame(bad, kMax, kV2).kind, DecodeResult::kError);
}

TEST(FrameDecode, PartialPayloadNeedsMore) {
  std::vector<uint8_t> full;
  encode_data(full, 1, as_bytes("0123456789"), false);
  for (size_t n = limits::kFrameHeaderSize; n < full.size(); n++) {
    DecodeResult r = decode_frame(Bytes(full).first(n), kMax, kV2);
    EXPECT_EQ(r.kind, DecodeResult::kNeedMore) << n;
  }
  DecodeResult r = decode_frame(full, kMax, kV2);
  ASSERT_EQ(r.kind, DecodeResult::kFrame);
  EXPECT_EQ(r.consumed, full.size());
}

// ------------------------------------------------------------------ HELLO fields (F-10)

std::vector<uint8_t> hello_payload(const Hello& h) {
  std::vector<uint8_t> out;
  encode_hello(out, h);
  return std::vector<uint8_t>(out.begin() + limits::kFrameHeaderSize, out.end());
}

void put_u16(std::vector<uint8_t>& p, size_t at, uint16_t v) {
  p[at] = static_cast<uint8_t>(v >> 8);
  p[at + 1] = static_cast<uint8_t>(v);
}
void put_u32(std::vector<uint8_t>& p, size_t at, uint32_t v) {
  for (size_t i = 0; i < 4; i++) p[at + i] = static_cast<uint8_t>(v >> (24 - 8 * i));
}

Code hello_error(const std::vector<uint8_t>& p) {
  FrameError err{Code::kNoError, ""};
  auto h = parse_hello(p, &err);
  if (h) return Code::kNoError;
  EXPECT_FALSE(err.what.empty());
  return err.code;
}

TEST(HelloParse, DefaultsAreValid) {
  EXPECT_EQ(hello_error(hello_payload(Hello{})), Code::kNoError);
}

TEST(HelloParse, F10_BadMagic) {
  for (size_t i = 0; i < 4; i++) {
    auto p = hello_payload(Hello{});
    p[i] ^= 0x20;
    EXPECT_EQ(hello_error(p), Code::kProtocol) << i;
  }
}

TEST(HelloParse, F10_Versions) {
  auto with = [](uint16_t min, uint16_t max) {
    auto p = hello_payload(Hello{});
    put_u16(p, 4, min);
    put_u16(p, 6, max);
    return hello_error(p);
  };
  EXPECT_EQ(with(1, 1), Code::kNoError);
  EXPECT_EQ(with(1, 5), Code::kNoError);  // a newer peer that still speaks 1
  EXPECT_EQ(with(2, 3), Code::kNoError);  // 2 is ours too
  EXPECT_EQ(with(3, 4), Code::kNoError);  // and 3 (the origin, §3a)
  EXPECT_EQ(with(4, 6), Code::kNoError);  // and 4 (PINS, §5b)
  EXPECT_EQ(with(5, 6), Code::kVersion);  // no silent downgrade
  EXPECT_EQ(with(5, 0xffff), Code::kVersion);
  EXPECT_EQ(with(0, 0), Code::kProtocol);  // version 0 does not exist
  EXPECT_EQ(with(0, 1), Code::kProtocol);
  EXPECT_EQ(with(3, 2), Code::kProtocol);  // an empty range is malformed
}

TEST(HelloParse, F10_ReservedBitsAndFlags) {
  for (uint16_t reserved : {uint16_t{1}, uint16_t{0x8000}, uint16_t{0xffff}}) {
    auto p = hello_payload(Hello{});
    put_u16(p, 10, reserved);
    EXPECT_EQ(hello_error(p), Code::kProtocol);
  }
  for (int bit = 1; bit < 8; bit++) {
    auto p = hello_payload(Hello{});
    p[9] = static_cast<uint8_t>(1u << bit);
    EXPECT_EQ(hello_error(p), Code::kProtocol) << bit;
  }
  auto p = hello_payload(Hello{});
  p[9] = kHelloFlagOpener;
  EXPECT_EQ(hello_error(p), Code::kNoError);
}

TEST(HelloParse, Role) {
  for (int role : {0, 5, 0xff}) {
    auto p = hello_payload(Hello{});
    p[8] = static_cast<uint8_t>(role);
    EXPECT_EQ(hello_error(p), Code::kProtocol) << role;
  }
}

TEST(HelloParse, F10_WindowRanges) {
  for (size_t at : {size_t{12}, size_t{16}}) {  // stream window, connection window
    SCOPED_TRACE(at);
    auto with = [&](uint32_t v) {
      auto p = hello_payload(Hello{});
      put_u32(p, at, v);
      return hello_error(p);
    };
    EXPECT_EQ(with(0), Code::kProtocol);
    EXPECT_EQ(with(1), Code::kNoError);
    EXPECT_EQ(with(limits::kMaxWindow - 1), Code::kNoError);
    EXPECT_EQ(with(limits::kMaxWindow), Code::kNoError);
    EXPECT_EQ(with(limits::kMaxWindow + 1), Code::kProtocol);
    EXPECT_EQ(with(0xFFFFFFFFu), Code::kProtocol);
  }
}

TEST(HelloParse, F10_MaxStreamsAndMaxFrameRanges) {
  auto streams = [](uint32_t v) {
    auto p = hello_payload(Hello{});
    put_u32(p, 20, v);
    return hello_error(p);
  };
  EXPECT_EQ(streams(0), Code::kProtocol);
  EXPECT_EQ(streams(1), Code::kNoError);
  EXPECT_EQ(streams(0xFFFFFFFFu), Code::kNoError);
  auto frame = [](uint32_t v) {
    auto p = hello_payload(Hello{});
    put_u32(p, 24, v);
    return hello_error(p);
  };
  EXPECT_EQ(frame(0), Code::kProtocol);
  EXPECT_EQ(frame(limits::kMinFramePayload - 1), Code::kProtocol);
  EXPECT_EQ(frame(limits::kMinFramePayload), Code::kNoError);
  EXPECT_EQ(frame(limits::kMaxFramePayload), Code::kNoError);
  EXPECT_EQ(frame(limits::kMaxFramePayload + 1), Code::kProtocol);
  EXPECT_EQ(frame(0xFFFFFFFFu), Code::kProtocol);
}

TEST(HelloParse, WrongPayloadSize) {
  auto p = hello_payload(Hello{});
  auto shorter = std::vector<uint8_t>(p.begin(), p.end() - 1);
  auto longer = p;
  longer.push_back(0);
  EXPECT_EQ(hello_error(shorter), Code::kFrameSize);
  EXPECT_EQ(hello_error(longer), Code::kFrameSize);
  EXPECT_EQ(hello_error({}), Code::kProtocol);              // cannot even read the magic
  EXPECT_FALSE(parse_hello(shorter, nullptr).has_value());  // err is optional
}

}  // namespace
}  // namespace ct

namespace ct {
namespace {

// §1, §3a: OPEN's row depends on the version in use. Before version 3 (and
// before the peer's HELLO, version 0) it is exactly 0 bytes; from version 3 it
// is 0 .. kMaxOriginPayload, and one byte more is FRAME_SIZE from the header.
TEST(FrameHeaderCheck, F45_OpenPayloadBoundFollowsTheVersion) {
  const auto open_err = [](uint32_t length, uint16_t version) {
    auto err = check_header({length, FrameType::kOpen, 0, 1}, kMax, version);
    return err ? err->code : Code::kNoError;
  };
  for (uint16_t v : {uint16_t{0}, uint16_t{1}, uint16_t{2}}) {
    SCOPED_TRACE("version " + std::to_string(v));
    EXPECT_EQ(open_err(0, v), Code::kNoError);
    EXPECT_EQ(open_err(1, v), Code::kFrameSize);
    EXPECT_EQ(open_err(limits::kMaxOriginPayload, v), Code::kFrameSize);
  }
  EXPECT_EQ(open_err(0, 3), Code::kNoError);
  EXPECT_EQ(open_err(1, 3), Code::kNoError);
  EXPECT_EQ(open_err(limits::kMaxOriginPayload, 3), Code::kNoError);
  EXPECT_EQ(open_err(limits::kMaxOriginPayload + 1, 3), Code::kFrameSize);
  EXPECT_EQ(open_err(0xFFFFFFFFu, 3), Code::kFrameSize);
  // Through the decoder: refused with only the header present.
  std::vector<uint8_t> b;
  encode_header(b, limits::kMaxOriginPayload + 1, FrameType::kOpen, 0, 1);
  DecodeResult r = decode_frame(b, kMax, 3);
  ASSERT_EQ(r.kind, DecodeResult::kError);
  EXPECT_EQ(r.error.code, Code::kFrameSize);
  // A payload within the bound waits for its bytes, then decodes whole.
  std::vector<uint8_t> whole;
  const std::vector<uint8_t> origin = {3, 8, 0, 0, 0, 0, 0, 0, 0, 9};
  encode_open(whole, 7, origin);
  EXPECT_EQ(decode_frame(Bytes(whole).first(12), kMax, 3).kind, DecodeResult::kNeedMore);
  r = decode_frame(whole, kMax, 3);
  ASSERT_EQ(r.kind, DecodeResult::kFrame);
  EXPECT_EQ(r.frame.h.stream, 7u);
  EXPECT_EQ(std::vector<uint8_t>(r.frame.payload.begin(), r.frame.payload.end()), origin);
  // The same OPEN on a version 2 connection: the old table says FRAME_SIZE.
  r = decode_frame(whole, kMax, 2);
  ASSERT_EQ(r.kind, DecodeResult::kError);
  EXPECT_EQ(r.error.code, Code::kFrameSize);
}

// ------------------------------------------------------------------ PINS (§5b, F-46)

std::vector<std::array<uint8_t, kPinSize>> some_pins(size_t n) {
  std::vector<std::array<uint8_t, kPinSize>> pins(n);
  for (size_t i = 0; i < n; i++) pins[i].fill(static_cast<uint8_t>(i + 1));
  return pins;
}

TEST(FrameCodec, F46_PinsRoundTrip) {
  for (size_t n : {size_t{1}, size_t{2}, limits::kMaxPins}) {
    std::vector<uint8_t> b;
    encode_pins(b, some_pins(n));
    ASSERT_EQ(b.size(), limits::kFrameHeaderSize + 1 + n * kPinSize);
    DecodeResult r = decode_frame(b, kMax, kPinsVersion);
    ASSERT_EQ(r.kind, DecodeResult::kFrame) << r.error.what;
    EXPECT_EQ(r.frame.h.type, FrameType::kPins);
    EXPECT_EQ(r.frame.h.stream, 0u);
    FrameError err{};
    auto pins = parse_pins(r.frame.payload, &err);
    ASSERT_TRUE(pins.has_value()) << err.what;
    EXPECT_EQ(*pins, some_pins(n));
  }
}

TEST(FrameHeaderCheck, F46_PinsLengthIsCheckedBeforeAnythingIsBuffered) {
  // The header alone decides: 10 bytes, no payload present yet.
  for (uint32_t len : {0u, 32u, static_cast<uint32_t>(kMaxPinsPayload + 1), 16384u}) {
    DecodeResult r = decode_frame(header(len, 8, 0, 0), kMax, kPinsVersion);
    ASSERT_EQ(r.kind, DecodeResult::kError) << len;
    EXPECT_EQ(r.error.code, Code::kFrameSize) << len;
  }
  EXPECT_EQ(decode_frame(header(33, 8, 0, 0), kMax, kPinsVersion).kind, DecodeResult::kNeedMore);
  EXPECT_EQ(
      decode_frame(header(static_cast<uint32_t>(kMaxPinsPayload), 8, 0, 0), kMax, kPinsVersion)
          .kind,
      DecodeResult::kNeedMore);
  auto on_stream = decode_frame(header(33, 8, 0, 1), kMax, kPinsVersion);
  ASSERT_EQ(on_stream.kind, DecodeResult::kError);
  EXPECT_EQ(on_stream.error.code, Code::kProtocol);
  auto flagged = decode_frame(header(33, 8, 1, 0), kMax, kPinsVersion);
  ASSERT_EQ(flagged.kind, DecodeResult::kError);
  EXPECT_EQ(flagged.error.code, Code::kProtocol);
}

TEST(FrameCodec, F46_MalformedPinsAreProtocolErrors) {
  auto payload = [](uint8_t count, size_t pins) {
    std::vector<uint8_t> p{count};
    p.resize(1 + pins * kPinSize, 0xaa);
    return p;
  };
  const std::vector<uint8_t> bad[] = {
      payload(0, 1),    // count 0
      payload(2, 1),    // count says 2, one present
      payload(1, 2),    // count says 1, two present
      payload(17, 16),  // above kMaxPins
      {1, 2, 3},        // a count and 2 bytes of a 32-byte pin
  };
  for (const auto& p : bad) {
    FrameError err{};
    EXPECT_FALSE(parse_pins(p, &err).has_value()) << p.size();
    EXPECT_EQ(err.code, Code::kProtocol);
  }
}

}  // namespace
}  // namespace ct
