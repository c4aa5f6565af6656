// The link multiplexer (docs/protocol.md §2-§6), sans-IO: bytes and time go
// in, events and bytes come out. It never touches an fd or reads a clock, so
// two sessions can be run back to back in memory by tests and fuzzers.
//
// Usage pattern (one per connection):
//   auto space = s.input_space();  read(fd, space) -> n;  s.commit_input(n, now);
//   for (auto& ev : s.take_events()) ...handle...;      // Data spans valid until
//                                                       // the next input_space()
//   write(fd, s.output()) -> n;  s.output_written(n);
//   s.tick(now) when now >= s.next_deadline().
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <deque>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "shared/base/raw_buffer.h"
#include "shared/base/time.h"
#include "shared/wire/frame.h"
#include "shared/wire/stream_state.h"

namespace ct {

// One process's byte budget for stream data it lets peers send it: every
// stream's receive credit (window not yet used, plus bytes delivered to the
// application and not consumed) is held against it. A stream starts with a
// small window charged unconditionally and grows towards its full window only
// from what the budget has left, so streams whose reader stalled pin at most
// the budget together, and the others keep moving on small windows.
class CreditPool {
 public:
  explicit CreditPool(uint64_t limit) : limit_(limit) {}
  uint64_t limit() const { return limit_; }
  uint64_t held() const { return held_; }
  bool exhausted() const { return held_ >= limit_; }
  void charge(uint64_t n) { held_ += n; }
  // Up to `want` more, as far as the budget allows.
  uint64_t take(uint64_t want) {
    const uint64_t n = std::min(want, held_ < limit_ ? limit_ - held_ : 0);
    held_ += n;
    return n;
  }
  void give_back(uint64_t n) { held_ -= std::min(n, held_); }
  void set_limit(uint64_t limit) { limit_ = limit; }

 private:
  uint64_t limit_;
  uint64_t held_ = 0;
};

struct SessionConfig {
  Role role = Role::kBroker;
  bool opener = false;
  uint32_t stream_window = limits::kDefaultStreamWindow;  // what we grant per stream
  uint32_t conn_window = limits::kDefaultConnWindow;      // what we grant per connection
  uint32_t max_streams = limits::kMaxConcurrentStreams;   // what we accept concurrently
  uint32_t max_frame = limits::kMaxFramePayload;          // largest payload we accept
  Duration hello_timeout = limits::kHelloTimeout;
  Duration ping_interval = limits::kPingInterval;  // zero: no keepalive (socketpairs)
  Duration dead_timeout = limits::kDeadPeerTimeout;
  std::array<uint8_t, 16> instance{};
  // The highest protocol version we offer (tests and fuzzers play a version
  // 1 peer with 1).
  uint16_t max_version = kProtocolVersion;
  // Version 2: send our first STATUS as soon as the peer's HELLO is accepted.
  // False (the bridge): only at the first set_status(), so that a link the
  // application closes at once (a duplicate) never announces itself.
  bool status_at_ready = true;
  LinkStatus status;  // what we tell the peer until set_status() says otherwise
  // Version 4 (§5b): the pins we accept for the peer's key, sent as PINS
  // right after HELLO (and again at set_pins()). Empty: no PINS (a data
  // channel, or a daemon verifying by CA only).
  std::vector<std::array<uint8_t, kPinSize>> pins;
  // Optional: the process's budget (not owned). With it, HELLO grants each
  // stream `pooled_initial_window` and the rest up to stream_window comes
  // from the pool as the stream's data is consumed.
  CreditPool* pool = nullptr;
  uint32_t pooled_initial_window = limits::kPooledInitialWindow;
  // Window auto-tuning (docs/protocol.md §4), with a pool only: a stream whose
  // data is consumed at more than half its window per round trip doubles its
  // window, up to this (and half the pool); the round trip is the lesser of
  // the last two a PING measured (one goes out with readiness, then one a
  // second while streams move data). 0: the window stays at
  // stream_window (data channels, where a round trip is microseconds).
  uint32_t max_stream_window = 0;
};

struct Event {
  enum Kind : uint8_t {
    kReady,     // peer HELLO accepted; `hello` holds it
    kOpened,    // peer opened `stream`; `data`: its origin (§3a, well formed; may be empty)
    kData,      // `data` arrived on `stream`; hand it on, then consume()
    kFin,       // peer half-closed `stream`
    kReset,     // `stream` was reset (by the peer, or by us for a peer error): forget it
    kWritable,  // `stream`'s send capacity went from 0 to > 0
    kGoAway,    // peer sent GOAWAY(`stream` = last id, `code`)
    kStatus,    // peer sent STATUS (version 2); peer_status() holds it
    kPins,      // peer sent PINS (version 4); peer_pins() holds the latest set
    kError,     // connection error `code` (`what` says why); flush output, then close
  };
  Kind kind;
  uint32_t stream = 0;
  Code code = Code::kNoError;
  Bytes data;
  std::string_view what;
};

struct SessionStats {
  uint64_t frames_in = 0, frames_out = 0;
  uint64_t bytes_in = 0, bytes_out = 0;  // DATA payload bytes
  uint64_t glitches = 0;
  uint64_t resets_in = 0, resets_out = 0;
  uint64_t pings_out = 0, pongs_in = 0;
  uint64_t bad_origins = 0;  // OPENs reset for a malformed origin (§3a)
  uint64_t pins_in = 0;  // PINS frames accepted (§5b): the first is the link's, later ones reloads
  uint64_t windows_grown = 0;  // stream windows auto-tuning doubled (§4)
};

class Session {
 public:
  Session(const SessionConfig& cfg, TimePoint now);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  // --- input
  // A writable region of at least `min` bytes at the end of the input buffer.
  std::span<uint8_t> input_space(size_t min = limits::kReadChunk);
  // Bumped by every input_space(): Data spans taken under another epoch are
  // stale. Lets a consumer that keeps spans past its event handler (Splice's
  // zero-copy write) check that it never outlives them.
  uint64_t input_epoch() const { return input_epoch_; }
  // Marks n bytes of input_space() as filled and parses every complete frame.
  void commit_input(size_t n, TimePoint now);
  // Convenience: copies `in` into input_space() and commits it.
  void feed(Bytes in, TimePoint now);
  // The transport ended. A partial frame left over is TRUNCATED.
  void transport_closed(bool clean);
  // Runs deadlines (HELLO, dead peer, keepalive ping).
  void tick(TimePoint now);
  TimePoint next_deadline() const;

  // --- events
  std::vector<Event>& events() { return events_; }
  // Moves the pending events out (clearing the internal list).
  std::vector<Event> take_events();

  // --- streams (application side)
  // Opens a stream (opener only). Returns 0 when no stream can be opened now
  // (goaway, id space used up, the peer's max concurrent streams reached,
  // dead): the caller refuses its wrapper.
  // `origin` (an encode_origin() payload, docs/protocol.md §3a) goes in the
  // OPEN only on a version 3 connection; otherwise the OPEN is empty.
  uint32_t open(Bytes origin = {});
  // How many bytes send() would accept now. A zero result registers interest:
  // a kWritable event follows when capacity returns.
  size_t send_capacity(uint32_t stream);
  // Sends data (at most send_capacity() bytes) and optionally FIN.
  void send(uint32_t stream, Bytes data, bool fin);
  void close_write(uint32_t stream) { send(stream, {}, true); }
  void reset(uint32_t stream, Code code);
  // The application delivered n bytes of this stream onward: credit the peer.
  void consume(uint32_t stream, size_t n);
  // Stop new streams; existing ones continue.
  void go_away(Code code);
  // What we tell the peer about ourselves (version 2, §5a). The first STATUS
  // goes out as soon as the peer's HELLO is accepted (or, without
  // status_at_ready, at the first call); later calls send one only when
  // something changed. On a version 1 connection: kept, never sent.
  void set_status(const LinkStatus& s);
  // The pins we accept for the peer's key (version 4, §5b): sent at once
  // when they differ from what we last sent; on an older connection, or
  // empty, kept and never sent.
  void set_pins(const std::vector<std::array<uint8_t, kPinSize>>& pins);

  // --- output
  Bytes output() const { return Bytes(out_).subspan(out_pos_); }
  void output_written(size_t n);
  bool has_output() const { return out_pos_ < out_.size(); }

  // --- state
  bool ready() const { return ready_; }
  bool dead() const { return dead_; }
  bool goaway_sent() const { return goaway_sent_; }
  bool goaway_received() const { return goaway_received_; }
  size_t open_streams() const { return streams_.size(); }
  bool stream_exists(uint32_t id) const { return streams_.count(id) != 0; }
  std::optional<StreamState> stream_state(uint32_t id) const;
  const Hello& peer_hello() const { return peer_; }
  // The version in use: the highest both HELLOs offer (0 before the peer's).
  uint16_t version() const { return version_; }
  // The peer's last STATUS; none before it (and never from a version 1 peer).
  const std::optional<LinkStatus>& peer_status() const { return peer_status_; }
  // The peer's last PINS (each replaces the one before); none before it,
  // and never from a peer below version 4 (its pins are unknown).
  const std::optional<std::vector<std::array<uint8_t, kPinSize>>>& peer_pins() const {
    return peer_pins_;
  }
  const SessionStats& stats() const { return stats_; }
  // The lesser of the last two round trips a PING measured; zero before the
  // first PING ACK.
  Duration rtt() const { return rtt_; }
  Code error_code() const { return error_code_; }
  // The last OPEN reset for a malformed origin: its stream and why (for a log
  // line when stats().bad_origins grew).
  uint32_t last_bad_origin_stream() const { return bad_origin_stream_; }
  std::string_view last_bad_origin_why() const { return bad_origin_why_; }

 private:
  // The unit tests move the next stream id to the end of the id space (F-16)
  // rather than open two billion streams to get there.
  friend struct SessionTestAccess;
  struct Stream {
    StreamState state = StreamState::kOpen;
    bool blocked = false;      // app saw zero capacity; owes it a kWritable
    bool queued = false;       // its id is in blocked_ (at most once)
    int64_t send_window = 0;   // what the peer still allows us
    int64_t recv_window = 0;   // what we still allow the peer
    uint64_t delivered = 0;    // handed to the app, not yet consumed
    uint32_t unacked = 0;      // consumed, not yet credited back
    uint32_t granted = 0;      // recv_window + delivered + unacked: held against the pool
    uint32_t limit = 0;        // what granted may grow to (auto-tuning raises it)
    TimePoint epoch_at{};      // auto-tuning: when the current measurement began
    uint64_t epoch_bytes = 0;  // ...and what was consumed since
  };

  void parse(TimePoint now);
  void on_frame(const Frame& f, TimePoint now);
  void on_hello(const Frame& f, TimePoint now);
  void on_open(const Frame& f);
  void on_data(const Frame& f);
  void on_window(const Frame& f);
  void on_reset(const Frame& f);
  void on_ping(const Frame& f, TimePoint now);
  void send_ping(TimePoint now);
  // Auto-tuning: `s` consumed n more bytes; maybe doubles its limit.
  void measure_consumption(Stream& s, size_t n);
  bool auto_tuning() const {
    return cfg_.pool != nullptr && cfg_.max_stream_window > cfg_.stream_window &&
           cfg_.ping_interval != Duration::zero();
  }
  void on_goaway(const Frame& f);
  void on_status(const Frame& f, TimePoint now);
  void send_status();
  void on_pins(const Frame& f, TimePoint now);
  void send_pins();

  void conn_error(Code code, std::string_view what);
  void stream_error(uint32_t id, Code code, std::string_view what);
  bool charge_misbehaviour(TimePoint now);
  void glitch();
  void control_frame_queued();
  void set_state(uint32_t id, Stream& s, StreamInput in);
  bool known_closed(uint32_t id) const;
  // Queues RESET for `s`, remembers its in-flight allowance, closes it.
  void send_reset(uint32_t id, Stream& s, Code code);
  // A frame for a closed stream: counted; charged unless it is the in-flight
  // race with our RESET (DATA within the allowance, or the peer's crossing RESET).
  void late_frame(uint32_t id, uint64_t data_bytes, bool ends_stream);
  void wake_blocked();
  int64_t capacity_of(const Stream& s) const;
  // What HELLO grants each stream, and a new stream's receive side.
  uint32_t initial_window() const;
  void init_recv(Stream& s);
  void erase_stream(uint32_t id);

  SessionConfig cfg_;
  Hello peer_;
  uint16_t version_ = 0;
  LinkStatus status_;                      // what we tell the peer
  std::optional<LinkStatus> sent_status_;  // what we last told it
  bool status_released_ = false;           // set_status() called, or status_at_ready
  std::optional<LinkStatus> peer_status_;
  std::vector<std::array<uint8_t, kPinSize>> pins_;  // what we tell the peer (§5b)
  std::vector<std::array<uint8_t, kPinSize>> sent_pins_;
  std::optional<std::vector<std::array<uint8_t, kPinSize>>> peer_pins_;
  bool ready_ = false;
  bool dead_ = false;
  bool goaway_sent_ = false;
  bool goaway_received_ = false;
  uint32_t goaway_last_ = limits::kMaxStreamId;  // peer's last_stream_id
  Code error_code_ = Code::kNoError;
  uint32_t bad_origin_stream_ = 0;
  std::string_view bad_origin_why_;

  std::unordered_map<uint32_t, Stream> streams_;
  uint32_t next_id_ = 1;     // opener: the next id to use
  uint32_t highest_id_ = 0;  // highest id ever opened on this connection
  std::vector<uint32_t> blocked_;
  // Streams we reset -> DATA bytes the peer may still have in flight on them
  // (kMaxResetAllowances, oldest forgotten first).
  std::unordered_map<uint32_t, int64_t> reset_allowance_;
  std::deque<uint32_t> reset_order_;

  int64_t conn_send_window_ = 0;  // what the peer allows us (0 until its HELLO)
  int64_t conn_recv_window_ = 0;  // what we still allow the peer
  uint32_t conn_unacked_ = 0;     // delivered, not yet credited back

  RawBuffer in_;
  uint64_t input_epoch_ = 0;
  size_t in_pos_ = 0;     // first unparsed byte
  size_t in_filled_ = 0;  // bytes of in_ holding real input
  std::vector<uint8_t> out_;
  size_t out_pos_ = 0;
  size_t control_since_drain_ = 0;

  std::vector<Event> events_;

  TimePoint started_;
  TimePoint last_rx_;
  TimePoint last_ping_;
  uint64_t ping_outstanding_ = 0;  // opaque of the ping in flight, 0 when none
  uint64_t ping_seq_ = 0;
  TimePoint ping_sent_at_;  // when the ping in flight left
  Duration rtt_{0};         // the lesser of the last two round trips measured
  Duration last_rtt_sample_{0};
  TimePoint now_;  // the latest time given to commit_input() or tick()

  double tokens_ = limits::kMisbehaviourBurst;
  TimePoint tokens_at_;

  SessionStats stats_;
};

}  // namespace ct
