// Frame codec of the link protocol (docs/protocol.md §1, §2). Sans-IO: the
// decoder is handed bytes and returns frames or one typed error; the encoder
// appends to a buffer. Neither knows about sockets, clocks or sessions.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/base/bytes.h"
#include "shared/wire/limits.h"

namespace ct {

enum class FrameType : uint8_t {
  kHello = 0,
  kOpen = 1,
  kData = 2,
  kWindow = 3,
  kReset = 4,
  kPing = 5,
  kGoAway = 6,
  kStatus = 7,  // version 2
  kPins = 8,    // version 4
};
inline constexpr uint8_t kFlagFin = 0x01;  // DATA: half-close
inline constexpr uint8_t kFlagAck = 0x01;  // PING: reply

// Error and reset codes (docs/protocol.md §7).
enum class Code : uint32_t {
  kNoError = 0,
  kProtocol = 1,
  kInternal = 2,
  kFlowControl = 3,
  kTimeout = 4,
  kStreamClosed = 5,
  kFrameSize = 6,
  kRefused = 7,
  kCancel = 8,
  kEnhanceYourCalm = 9,
  kVersion = 10,
  kUpstreamRefused = 11,
  kUpstreamReset = 12,
  kNoBridge = 13,
  kShutdown = 14,
  kResource = 15,
  kTruncated = 16,
  kWrapperTls = 17,
  kDuplicateLink = 18,
};
std::string_view code_name(Code c);
std::string_view frame_type_name(FrameType t);

struct FrameHeader {
  uint32_t length = 0;
  FrameType type = FrameType::kHello;
  uint8_t flags = 0;
  uint32_t stream = 0;
};

enum class Role : uint8_t { kBroker = 1, kBridge = 2, kTlsProcess = 3, kForwardProcess = 4 };
inline constexpr uint8_t kHelloFlagOpener = 0x01;
// The versions we speak (docs/protocol.md §2): 2 adds STATUS, 3 the OPEN
// payload (the stream's origin, §3a), 4 PINS (§5b).
inline constexpr uint16_t kMinProtocolVersion = 1;
inline constexpr uint16_t kProtocolVersion = 4;
inline constexpr uint16_t kOriginVersion = 3;
inline constexpr uint16_t kPinsVersion = 4;
inline constexpr size_t kHelloSize = 44;
inline constexpr size_t kStatusSize = 8;
// PINS (§5b): a count, then that many SHA-256 SPKI hashes. At most
// limits::kMaxPins, the most a daemon can be configured with.
inline constexpr size_t kPinSize = 32;
inline constexpr size_t kMaxPinsPayload = 1 + limits::kMaxPins * kPinSize;

// What the OpenBao behind a bridge says of itself (docs/protocol.md §5a).
enum class UpstreamState : uint8_t {
  kUnknown = 0,  // not polled (polling off, not yet, a broker, a version 1 peer)
  kActive = 1,
  kStandby = 2,
  kPerfStandby = 3,
  kSealed = 4,
  kUninitialized = 5,
  kUnreachable = 6,
};
inline constexpr uint8_t kUpstreamStates = 7;
std::string_view upstream_state_name(UpstreamState s);
// How logs, metrics and the status file name a broker instance: the first 8
// bytes of its HELLO instance id in hex (the whole id is what is compared).
std::string instance_name(const std::array<uint8_t, 16>& id);

// A STATUS frame's content: what a side tells its peer about itself.
struct LinkStatus {
  uint16_t replicas = 0;                             // broker: replicas it runs; 0 unknown
  UpstreamState upstream = UpstreamState::kUnknown;  // bridge: its OpenBao's state
  bool operator==(const LinkStatus&) const = default;
};

struct Hello {
  uint16_t min_version = kMinProtocolVersion;
  uint16_t max_version = kProtocolVersion;
  Role role = Role::kBroker;
  bool opener = false;
  uint32_t stream_window = limits::kDefaultStreamWindow;
  uint32_t conn_window = limits::kDefaultConnWindow;
  uint32_t max_streams = limits::kMaxConcurrentStreams;
  uint32_t max_frame = limits::kMaxFramePayload;
  std::array<uint8_t, 16> instance{};
};

// A decoded frame. `payload` points into the buffer given to decode() and is
// valid only as long as that buffer is.
struct Frame {
  FrameHeader h;
  Bytes payload;
};

struct FrameError {
  Code code;
  std::string_view what;  // static string, for logs
};

// Checks a header against the per-type table (§1) before any payload is
// buffered. `max_payload` is the limit we advertised; `version` the one in
// use (0 before the peer's HELLO), which decides OPEN's row: exactly 0 bytes
// before version 3, up to kMaxOriginPayload from it.
std::optional<FrameError> check_header(const FrameHeader& h, uint32_t max_payload,
                                       uint16_t version);

// Result of one decode step over a byte buffer.
struct DecodeResult {
  enum Kind { kFrame, kNeedMore, kError } kind = kNeedMore;
  Frame frame;                           // kFrame
  size_t consumed = 0;                   // kFrame: bytes to drop from the front
  FrameError error{Code::kNoError, ""};  // kError
};

// Decodes at most one frame from the front of `in`. Never reads past `in`;
// rejects a bad header as soon as its 10 bytes are present.
DecodeResult decode_frame(Bytes in, uint32_t max_payload, uint16_t version);

// Typed payload parsers; each consumes its payload exactly.
std::optional<Hello> parse_hello(Bytes payload, FrameError* err);
std::optional<uint32_t> parse_u32_payload(Bytes payload);  // WINDOW, RESET
struct GoAway {
  uint32_t last_stream;
  uint32_t code;
};
std::optional<GoAway> parse_goaway(Bytes payload);
std::optional<LinkStatus> parse_status(Bytes payload, FrameError* err);
// PINS: 1 .. kMaxPins pins (count 0, a count above kMaxPins or a length
// other than 1 + 32 * count is PROTOCOL).
std::optional<std::vector<std::array<uint8_t, kPinSize>>> parse_pins(Bytes payload,
                                                                     FrameError* err);

// Encoders append one whole frame to `out` (no cap: callers bound what they
// produce through flow control and the control-frame counter).
void encode_header(std::vector<uint8_t>& out, uint32_t length, FrameType t, uint8_t flags,
                   uint32_t stream);
void encode_hello(std::vector<uint8_t>& out, const Hello& h);
// `origin`: an encode_origin() payload (version 3 only; empty otherwise).
void encode_open(std::vector<uint8_t>& out, uint32_t stream, Bytes origin = {});
void encode_data(std::vector<uint8_t>& out, uint32_t stream, Bytes data, bool fin);
void encode_window(std::vector<uint8_t>& out, uint32_t stream, uint32_t increment);
void encode_reset(std::vector<uint8_t>& out, uint32_t stream, Code code);
void encode_ping(std::vector<uint8_t>& out, uint64_t opaque, bool ack);
void encode_goaway(std::vector<uint8_t>& out, uint32_t last_stream, Code code);
void encode_status(std::vector<uint8_t>& out, const LinkStatus& s);
// `pins`: 1 .. kMaxPins (checked: more is a bug of ours).
void encode_pins(std::vector<uint8_t>& out, const std::vector<std::array<uint8_t, kPinSize>>& pins);

}  // namespace ct
