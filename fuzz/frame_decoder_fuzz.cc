// The frame decoder over raw bytes, and the encode/decode round
// trip (docs/protocol.md §1).
//
// Input: one byte choosing the max payload we "advertised" and the version in
// use, then a byte stream
// decoded frame after frame the way Session::parse does. Oracle:
//  - decode_frame never consumes more than it was given, and a frame's payload
//    lies inside the input right after its 10-byte header;
//  - every input ends in whole frames followed by NeedMore or by exactly one
//    typed error (PROTOCOL or FRAME_SIZE), and that error is already reported
//    from the header alone (no payload buffered before the check);
//  - a strict prefix of a frame is NeedMore (no frame from partial bytes);
//  - each decoded frame re-encoded with the encode_* function of its
//    type gives the identical bytes (the encoding is canonical) and decodes to
//    the identical frame.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "shared/wire/frame.h"
#include "shared/wire/origin.h"

namespace {

using namespace ct;

bool same_header(const FrameHeader& a, const FrameHeader& b) {
  return a.length == b.length && a.type == b.type && a.flags == b.flags && a.stream == b.stream;
}

// Re-encodes a decoded frame through the typed encoders into `out` (emptied
// first). One buffer serves every frame of an input: an input holds hundreds
// of small frames, and a fresh vector per frame, grown header byte by header
// byte, was a fifth of the target's time (ASan records a stack per malloc).
void reencode(const Frame& f, std::vector<uint8_t>& out) {
  out.clear();
  const uint32_t id = f.h.stream;
  switch (f.h.type) {
    case FrameType::kHello: {
      FrameError err{Code::kNoError, ""};
      if (auto h = parse_hello(f.payload, &err)) {
        encode_hello(out, *h);
      } else {
        // Not a HELLO we accept: only the header can be re-encoded.
        encode_header(out, f.h.length, f.h.type, f.h.flags, id);
        out.insert(out.end(), f.payload.begin(), f.payload.end());
      }
      break;
    }
    case FrameType::kOpen: {
      encode_open(out, id, f.payload);
      // A well-formed origin (§3a) has one encoding: decoded and encoded
      // again, it is the same bytes.
      std::string_view why;
      if (auto o = decode_origin(f.payload, &why)) {
        const std::vector<uint8_t> again = encode_origin(*o);
        FZ_CHECK(again.size() == f.payload.size() &&
                     std::equal(again.begin(), again.end(), f.payload.begin()),
                 "an origin of %zu bytes re-encodes to %zu bytes", f.payload.size(), again.size());
      } else {
        FZ_CHECK(!why.empty(), "a malformed origin without a reason");
      }
      break;
    }
    case FrameType::kData:
      encode_data(out, id, f.payload, (f.h.flags & kFlagFin) != 0);
      break;
    case FrameType::kWindow: {
      auto v = parse_u32_payload(f.payload);
      FZ_CHECK(v.has_value(), "WINDOW payload of %zu bytes passed the header check",
               f.payload.size());
      encode_window(out, id, *v);
      break;
    }
    case FrameType::kReset: {
      auto v = parse_u32_payload(f.payload);
      FZ_CHECK(v.has_value(), "RESET payload of %zu bytes passed the header check",
               f.payload.size());
      encode_reset(out, id, static_cast<Code>(*v));
      break;
    }
    case FrameType::kPing: {
      ByteReader rd(f.payload);
      const uint64_t opaque = rd.u64();
      FZ_CHECK(rd.finish(), "PING payload of %zu bytes passed the header check", f.payload.size());
      encode_ping(out, opaque, (f.h.flags & kFlagAck) != 0);
      break;
    }
    case FrameType::kGoAway: {
      auto g = parse_goaway(f.payload);
      FZ_CHECK(g.has_value(), "GOAWAY payload of %zu bytes passed the header check",
               f.payload.size());
      encode_goaway(out, g->last_stream, static_cast<Code>(g->code));
      break;
    }
    case FrameType::kStatus: {
      FrameError err{Code::kNoError, ""};
      if (auto st = parse_status(f.payload, &err)) {
        encode_status(out, *st);
      } else {
        // Reserved bits or an unknown state: the session rejects it; only
        // the header round-trips.
        encode_header(out, f.h.length, f.h.type, f.h.flags, id);
        out.insert(out.end(), f.payload.begin(), f.payload.end());
      }
      break;
    }
    case FrameType::kPins: {
      FrameError err{Code::kNoError, ""};
      if (auto pins = parse_pins(f.payload, &err)) {
        encode_pins(out, *pins);  // exact: a count and that many pins
      } else {
        FZ_CHECK(err.code == Code::kProtocol, "malformed PINS is not PROTOCOL");
        encode_header(out, f.h.length, f.h.type, f.h.flags, id);
        out.insert(out.end(), f.payload.begin(), f.payload.end());
      }
      break;
    }
  }
}

void check_frame(Bytes in, const DecodeResult& r, uint32_t max_payload, uint16_t version,
                 std::vector<uint8_t>& enc) {
  const Frame& f = r.frame;
  FZ_CHECK(r.consumed <= in.size(), "consumed %zu of %zu bytes", r.consumed, in.size());
  FZ_CHECK(r.consumed == limits::kFrameHeaderSize + f.payload.size(),
           "consumed %zu for a payload of %zu", r.consumed, f.payload.size());
  FZ_CHECK(f.h.length == f.payload.size(), "length %u, payload %zu", f.h.length, f.payload.size());
  FZ_CHECK(f.payload.empty() || f.payload.data() == in.subspan(limits::kFrameHeaderSize).data(),
           "payload does not follow the header");
  FZ_CHECK(!check_header(f.h, max_payload, version).has_value(), "a frame failing check_header");
  FZ_CHECK(f.h.type != FrameType::kOpen || f.h.length <= limits::kMaxOriginPayload,
           "OPEN over the origin's bound");
  FZ_CHECK(f.h.type != FrameType::kOpen || f.h.length == 0 || version >= kOriginVersion,
           "an OPEN payload before version 3");
  FZ_CHECK(f.h.length <= max_payload || f.h.type != FrameType::kData, "DATA over max payload");
  FZ_CHECK(f.h.length <= limits::kMaxFramePayload, "payload over the protocol maximum");

  // A strict prefix is never a frame; in particular the header alone is not
  // one when there is a payload.
  const Bytes whole = in.first(r.consumed);
  for (size_t cut : {size_t{0}, limits::kFrameHeaderSize - 1, r.consumed - 1}) {
    if (cut >= r.consumed) continue;
    const DecodeResult p = decode_frame(whole.first(cut), max_payload, version);
    FZ_CHECK(p.kind == DecodeResult::kNeedMore,
             "a %zu-byte prefix of a %zu-byte frame is not NeedMore", cut, r.consumed);
  }

  // Canonical re-encoding and an identical decode.
  reencode(f, enc);
  FZ_CHECK(enc.size() == whole.size() && std::equal(enc.begin(), enc.end(), whole.begin()),
           "re-encoding a %s frame changed its bytes (%zu -> %zu bytes)",
           std::string(frame_type_name(f.h.type)).c_str(), whole.size(), enc.size());
  const DecodeResult again = decode_frame(enc, max_payload, version);
  FZ_CHECK(again.kind == DecodeResult::kFrame && again.consumed == enc.size(),
           "re-encoded frame does not decode whole");
  FZ_CHECK(same_header(again.frame.h, f.h), "re-encoded frame has another header");
  FZ_CHECK(std::equal(again.frame.payload.begin(), again.frame.payload.end(), f.payload.begin(),
                      f.payload.end()),
           "re-encoded frame has another payload");
}

void check_error(Bytes in, const DecodeResult& r, uint32_t max_payload, uint16_t version) {
  FZ_CHECK(r.error.code == Code::kProtocol || r.error.code == Code::kFrameSize,
           "untyped decode error %u", static_cast<unsigned>(r.error.code));
  FZ_CHECK(!r.error.what.empty(), "decode error without a reason");
  FZ_CHECK(in.size() >= limits::kFrameHeaderSize, "error before a whole header");
  // The verdict comes from the header alone.
  const DecodeResult h = decode_frame(in.first(limits::kFrameHeaderSize), max_payload, version);
  FZ_CHECK(h.kind == DecodeResult::kError && h.error.code == r.error.code,
           "the header alone does not give the same error");
}

void check_need_more(Bytes in, uint32_t max_payload, uint16_t version) {
  if (in.size() < limits::kFrameHeaderSize) return;
  // A whole, valid header: the payload is what is missing.
  ByteReader rd(in);
  FrameHeader h;
  h.length = rd.u32();
  const uint8_t type = rd.u8();
  h.flags = rd.u8();
  h.stream = rd.u32();
  FZ_CHECK(type <= static_cast<uint8_t>(FrameType::kPins), "NeedMore on an unknown type");
  h.type = static_cast<FrameType>(type);
  FZ_CHECK(!check_header(h, max_payload, version).has_value(), "NeedMore on a bad header");
  FZ_CHECK(in.size() < limits::kFrameHeaderSize + h.length,
           "NeedMore with the whole frame present");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::FuzzInput fin(Bytes(data, size));
  // The limit we advertised: the protocol bounds, their neighbours, or any.
  constexpr uint32_t kMaxPayloads[] = {limits::kMaxFramePayload, limits::kMinFramePayload,
                                       limits::kMinFramePayload + 1, limits::kMaxFramePayload - 1,
                                       4096};
  // The same byte picks the version in use (§1: OPEN's row depends on it):
  // 0..4 version 1, as every entry written before version 3 has it; 5..9
  // version 2; 10..14 version 3; 15..19 version 4, and so on.
  const uint8_t sel = fin.u8();
  const uint32_t max_payload = kMaxPayloads[sel % std::size(kMaxPayloads)];
  const auto version =
      static_cast<uint16_t>(1 + (sel / std::size(kMaxPayloads)) % kProtocolVersion);
  Bytes in = fin.rest();
  size_t frames = 0;
  std::vector<uint8_t> enc;
  enc.reserve(limits::kFrameHeaderSize + limits::kMaxFramePayload);
  for (;;) {
    const DecodeResult r = decode_frame(in, max_payload, version);
    if (r.kind == DecodeResult::kNeedMore) {
      check_need_more(in, max_payload, version);
      break;
    }
    if (r.kind == DecodeResult::kError) {
      check_error(in, r, max_payload, version);
      break;
    }
    check_frame(in, r, max_payload, version, enc);
    FZ_CHECK(r.consumed > 0, "a frame of zero bytes");
    in = in.subspan(r.consumed);
    frames++;
  }
  FZ_CHECK(frames <= size / limits::kFrameHeaderSize, "more frames than headers fit");
  return 0;
}
