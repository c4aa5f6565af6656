// Joins a stream of one link to a stream of another, in both directions, in
// a TLS process (local socketpair link <-> broker/bridge link). Back-pressure
// is end to end: bytes are consumed (credited) on the source stream only
// once the destination stream accepted them, so a stalled wrapper stalls only
// its own stream, and each direction buffers at most one window.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "shared/base/log.h"
#include "shared/stream/codec_pump.h"
#include "shared/stream/link.h"

namespace ct {

class Relay {
 public:
  struct End {
    Link* link = nullptr;
    uint32_t id = 0;
  };
  End a;  // the side the stream was opened from (or the first attached)
  End b;  // the other side; unset while the stream is pending
  std::unique_ptr<StreamCodec> codec;  // optional: a transform between a and b
  // What `a`'s OPEN said of the stream's origin (docs/protocol.md §3a), for
  // the OPEN of `b`; empty: none.
  std::vector<uint8_t> origin;
  // codec: `b` is opened only once the codec's handshake is done (the
  // bridge's wrapper TLS, so that `b`'s origin can say which name the wrapper
  // asked for): RelayTable's inner opener does it.
  bool inner_pending = false;

 private:
  friend class RelayTable;
  RelayDir ab, ba;  // without a codec
  CodecPump pump;   // with one
  // Deadlines (RelayTable::start_timers): the codec's handshake must be done
  // by handshake_deadline; last_active is the last byte either way.
  TimePoint handshake_deadline = TimePoint::max();
  TimePoint last_active{};
  TimePoint timer_at = TimePoint::max();  // our key in RelayTable::timers_
  bool inner_seen = false;                // codec: `b` (OpenBao) sent at least one byte
  // codec: `b` could not reach OpenBao and is gone; we answer the wrapper
  // ourselves (an HTTP 502) and then only wait for it to close.
  bool answering = false;
  bool answer_fin_sent = false;
};

// Why a codec (the wrapper's TLS in the bridge) ended a stream. A client can
// cause these at will (a wrong CA, a port scan), so they are counted and
// logged throttled, and reset with WRAPPER_TLS or TIMEOUT, not PROTOCOL: they
// say nothing about the link.
struct CodecFailures {
  uint64_t handshake = 0;  // the handshake failed (alert, bad ClientHello, wrong version)
  uint64_t timeout = 0;    // not complete within the handshake deadline
  uint64_t record = 0;     // a bad record or write after the handshake
};

// Owns every relay of a TLS process and is the only index from a stream to
// its relay: nothing else holds a relay past the call that returned it but
// through find().
class RelayTable {
 public:
  // A relay with only its first end (the other attaches later, or never).
  // The stream must not belong to another relay.
  Relay* create(Link* a, uint32_t id_a);
  void attach(Relay* r, Link* b, uint32_t id_b);
  Relay* find(const Link* l, uint32_t id) const;
  size_t size() const { return relays_.size(); }
  // How many of `l`'s streams belong to a relay.
  size_t streams_on(const Link& l) const;

  // Data, Fin, Reset and Writable events go to their stream's relay (others,
  // and streams without one, are not ours and are ignored), as
  // SpliceTable::dispatch does for the forwarding process.
  void dispatch(Link& l, const Event& ev) noexcept;
  // Ends a relay from the outside (timeout, refusal): resets both ends.
  void reset(Relay* r, Code code);
  // The link is gone: every relay on it resets its other end with `code`.
  void link_closed(Link* l, Code code);

  // Deadlines for the relays given to start_timers(): a codec's handshake
  // must complete within `handshake` (absolute, never extended by bytes: a
  // client sending one byte a second gains nothing); a stream with no byte
  // either way for `idle` is reset (zero: never).
  // Opens the inner stream of a relay with inner_pending once its codec is
  // established. A null link: none could be opened; the relay is reset
  // (RESOURCE).
  using InnerOpener = std::function<Relay::End(Relay&)>;
  void set_inner_opener(InnerOpener f) { open_inner_ = std::move(f); }

  void set_timeouts(Duration handshake, Duration idle) {
    handshake_timeout_ = handshake;
    idle_timeout_ = idle;
  }
  void start_timers(Relay* r, TimePoint now);
  // Resets the relays whose deadline passed (TIMEOUT on both ends).
  void expire(TimePoint now);
  TimePoint next_deadline() const {
    return timers_.empty() ? TimePoint::max() : timers_.begin()->first;
  }
  const CodecFailures& codec_failures() const { return codec_failures_; }
  uint64_t idle_resets() const { return idle_resets_; }

 private:
  void on_data(Link* from, uint32_t id, Bytes data);
  void on_fin(Link* from, uint32_t id);
  void on_reset(Link* from, uint32_t id, Code code);
  void on_writable(Link* to, uint32_t id);
  void pump(Relay* r, Relay::End& src, Relay::End& dst, RelayDir& d);
  // Runs the relay's CodecPump; resets and removes the relay when the codec
  // failed, removes it when both FINs are through.
  void pump_codec(Relay* r);
  // inner_pending: runs the codec's outer side; once established, opens `b`.
  // True when `b` is open now; false when the relay waits, or is gone.
  bool open_pending_inner(Relay* r);
  void maybe_done(Relay* r);
  void remove(Relay* r);
  void set_timer(Relay* r, TimePoint at);
  // In TLS-terminating mode, OpenBao unreachable: a 502 the client's HTTP
  // stack understands (and retries, as against OpenBao itself) instead of a
  // reset it cannot tell from a broken tunnel.
  // OpenBao read the request and closed without answering: the same, saying so.
  void answer_unreachable(Relay* r, const std::string& why);
  void pump_answer(Relay* r);
  void codec_failed(Relay* r, uint64_t* counter, const char* what, const std::string& why);
  // Keyed by the first end, which never changes; ends_ indexes both ends
  // (the second one from attach() until its stream is gone).
  std::map<StreamKey, std::unique_ptr<Relay>> relays_;
  std::map<StreamKey, Relay*> ends_;
  // Ordered by deadline: the next one is begin(); 16k streams cost a tree
  // walk per change, not a scan per loop iteration.
  std::set<std::pair<TimePoint, Relay*>> timers_;
  InnerOpener open_inner_;
  Duration handshake_timeout_ = Duration::zero();
  Duration idle_timeout_ = Duration::zero();
  CodecFailures codec_failures_;
  uint64_t idle_resets_ = 0;
  log::Throttle codec_log_;
  log::Throttle idle_log_;
};

}  // namespace ct
