// The HELLO payload parser and the handshake that uses it
// (docs/protocol.md §2).
//
// Input: the raw HELLO payload. Oracle:
//  - parse_hello accepts only exactly 44 bytes, and a failure carries one of
//    the codes §2 names (PROTOCOL, VERSION, FRAME_SIZE);
//  - an accepted HELLO re-encodes (encode_hello) to a 10-byte header followed
//    by the same 44 bytes;
//  - handshake: the payload sent as a HELLO frame to a fresh bridge session
//    (the non-opener) makes it Ready exactly when parse_hello accepts it and the
//    sender claims OPENER, and otherwise ends in one connection error whose code
//    is the parser's (or PROTOCOL for a wrong OPENER claim or a bad length).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "fuzz/fuzz_input.h"
#include "shared/wire/frame.h"
#include "shared/wire/session.h"

namespace {

using namespace ct;

void check_handshake(Bytes payload, const std::optional<Hello>& parsed, const FrameError& err) {
  const TimePoint t0{};
  SessionConfig cfg;
  cfg.role = Role::kBridge;
  cfg.opener = false;
  Session s(cfg, t0);
  std::vector<uint8_t> frame;
  encode_header(frame, static_cast<uint32_t>(payload.size()), FrameType::kHello, 0, 0);
  frame.insert(frame.end(), payload.begin(), payload.end());
  s.feed(frame, t0);
  const std::vector<Event> ev = s.take_events();
  FZ_CHECK(ev.size() == 1, "%zu events from one HELLO", ev.size());
  if (payload.size() != kHelloSize) {
    FZ_CHECK(ev[0].kind == Event::kError && ev[0].code == Code::kFrameSize,
             "a %zu-byte HELLO was not a FRAME_SIZE error", payload.size());
    return;
  }
  if (parsed && parsed->opener) {
    FZ_CHECK(ev[0].kind == Event::kReady && s.ready(), "a valid HELLO did not make us ready");
    const Hello& p = s.peer_hello();
    FZ_CHECK(p.stream_window == parsed->stream_window && p.conn_window == parsed->conn_window &&
                 p.max_streams == parsed->max_streams && p.max_frame == parsed->max_frame &&
                 p.role == parsed->role && p.instance == parsed->instance,
             "the session kept another HELLO than the one parsed");
    return;
  }
  FZ_CHECK(ev[0].kind == Event::kError && s.dead(), "a refused HELLO did not end the session");
  const Code want = parsed ? Code::kProtocol : err.code;
  FZ_CHECK(ev[0].code == want, "HELLO refused with code %u, the parser said %u",
           static_cast<unsigned>(ev[0].code), static_cast<unsigned>(want));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const Bytes payload(data, size);
  FrameError err{Code::kNoError, ""};
  const std::optional<Hello> h = parse_hello(payload, &err);
  if (h) {
    FZ_CHECK(size == kHelloSize, "a %zu-byte HELLO was accepted", size);
    std::vector<uint8_t> out;
    encode_hello(out, *h);
    FZ_CHECK(out.size() == limits::kFrameHeaderSize + kHelloSize, "HELLO encodes to %zu bytes",
             out.size());
    std::vector<uint8_t> header;
    encode_header(header, kHelloSize, FrameType::kHello, 0, 0);
    FZ_CHECK(std::equal(header.begin(), header.end(), out.begin()), "HELLO header differs");
    FZ_CHECK(std::equal(payload.begin(), payload.end(), out.begin() + limits::kFrameHeaderSize),
             "an accepted HELLO does not re-encode to the same 44 bytes");
  } else {
    FZ_CHECK(
        err.code == Code::kProtocol || err.code == Code::kVersion || err.code == Code::kFrameSize,
        "HELLO refused with code %u", static_cast<unsigned>(err.code));
    FZ_CHECK(!err.what.empty(), "HELLO refused without a reason");
  }
  // A HELLO frame longer than 44 bytes is refused by the header check before
  // any payload is buffered; keep the session part to plausible sizes.
  if (size <= 2 * kHelloSize) check_handshake(payload, h, err);
  return 0;
}
