// How a relay with a codec moves bytes: the codec (the wrapper's TLS in the
// bridge) sits between a relay's outer stream `a` and its inner stream `b`,
// and CodecPump feeds it from both sessions and drains it into both, with
// the relay's back-pressure rule: a source is credited only for what went
// on. It sees only the two sessions and the codec, so it is tested without
// links or processes (tests/unit/stream/codec_pump_test.cc).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "shared/base/bytes.h"
#include "shared/wire/session.h"

namespace ct {

// A byte transform between a relay's outer end `a` (e.g. a wrapper's TLS
// records arriving on the link) and its inner end `b` (plaintext towards
// OpenBao). The bridge's TLS process attaches a TLS server (tls_stream.h).
class StreamCodec {
 public:
  virtual ~StreamCodec() = default;
  virtual void put_outer(Bytes in) = 0;         // outer bytes in (all kept)
  virtual uint64_t outer_consumed() const = 0;  // of those, how many are processed
  // Inner bytes ready; an empty `out` only advances a handshake.
  virtual size_t take_inner(std::span<uint8_t> out) = 0;
  virtual bool put_inner(Bytes in) = 0;  // false: not now (handshake)
  // Every outer byte waiting to be sent, not a piece of them: CodecPump stops
  // feeding inner bytes when this grows past its high-water mark.
  virtual Bytes outer_pending() const = 0;
  virtual void outer_sent(size_t n) = 0;
  virtual void close_inner() = 0;          // inner side done: close_notify
  virtual bool inner_eof() const = 0;      // the outer peer closed cleanly
  virtual bool outer_drained() const = 0;  // every outer byte given is processed
  virtual bool established() const = 0;    // the handshake (if any) is complete
  virtual bool failed() const = 0;
  virtual const std::string& error() const = 0;
  // The server name the outer peer asked for (a TLS server's SNI), once
  // established; empty when none or not known.
  virtual std::string server_name() const { return {}; }
};

// One direction of a relay: bytes accepted from the source stream and not
// yet sent on, and the source's FIN.
struct RelayDir {
  std::vector<uint8_t> buf;  // accepted from the source, not yet sent on
  size_t pos = 0;
  bool fin = false;       // source half-closed
  bool fin_sent = false;  // ...and we forwarded it
  // Keeps what buf allocates close to what it holds unsent (codec_pump.cc).
  void append(Bytes data);
  void drained();
};

class CodecPump {
 public:
  // Outer bytes go straight to the codec (StreamCodec::put_outer); `a` is
  // credited as the codec processes them. Inner bytes wait here until the
  // codec takes them; `b` is credited then.
  void inner_data(Bytes data) { from_inner_.append(data); }
  void inner_fin() { from_inner_.fin = true; }
  void outer_fin() { outer_fin_ = true; }
  bool outer_fin_seen() const { return outer_fin_; }

  // Moves what it can in both directions (bounded rounds), then forwards
  // the half-closes: `a`'s FIN (or the codec's clean end) becomes `b`'s once
  // every outer byte before it was processed; `b`'s FIN becomes the codec's
  // close (close_notify), then `a`'s FIN once those bytes left. False: the
  // codec failed; the caller resets both streams.
  bool run(StreamCodec& c, Session& sa, uint32_t a, Session& sb, uint32_t b);
  // The same with no inner stream yet (the bridge opens it once the codec's
  // handshake is done, docs/architecture.md): only the outer side moves.
  // False: the codec failed.
  bool run_outer(StreamCodec& c, Session& sa, uint32_t a);
  // Both FINs were forwarded: both sessions are done with the streams.
  bool done() const { return inner_fin_sent_ && from_inner_.fin_sent; }
  // Plaintext bytes sent towards `b` so far (the wrapper's request).
  uint64_t inner_bytes_sent() const { return inner_sent_; }

 private:
  RelayDir from_inner_;
  bool outer_fin_ = false;       // `a` half-closed
  uint64_t outer_credited_ = 0;  // outer bytes already consumed on `a`
  bool inner_fin_sent_ = false;  // FIN sent towards `b`
  bool outer_closing_ = false;   // close_inner() done: close_notify queued towards `a`
  uint64_t inner_sent_ = 0;      // bytes sent towards `b`
};

}  // namespace ct
