#include "shared/wire/session.h"

#include <algorithm>

#include "shared/base/check.h"
#include "shared/wire/origin.h"

namespace ct {

namespace {
// Credit is returned once a quarter of a window has been used, so a sender
// always has room for full frames and never dribbles (F-40).
constexpr uint32_t credit_threshold(uint32_t window) {
  return std::max<uint32_t>(window / 4, 1);
}
}  // namespace

Session::Session(const SessionConfig& cfg, TimePoint now)
    : cfg_(cfg),
      status_(cfg.status),
      status_released_(cfg.status_at_ready),
      pins_(cfg.pins),
      started_(now),
      last_rx_(now),
      last_ping_(now),
      now_(now),
      tokens_at_(now) {
  conn_recv_window_ = cfg_.conn_window;
  Hello h;
  h.role = cfg_.role;
  h.opener = cfg_.opener;
  h.stream_window = initial_window();
  h.conn_window = cfg_.conn_window;
  h.max_streams = cfg_.max_streams;
  h.max_frame = cfg_.max_frame;
  h.instance = cfg_.instance;
  h.max_version = std::clamp(cfg_.max_version, kMinProtocolVersion, kProtocolVersion);
  encode_hello(out_, h);
  stats_.frames_out++;
}

Session::~Session() {
  if (cfg_.pool != nullptr)
    for (auto& [id, s] : streams_) cfg_.pool->give_back(s.granted);
}

uint32_t Session::initial_window() const {
  return cfg_.pool != nullptr ? std::min(cfg_.pooled_initial_window, cfg_.stream_window)
                              : cfg_.stream_window;
}

void Session::init_recv(Stream& s) {
  s.recv_window = initial_window();
  s.granted = initial_window();
  s.limit = cfg_.stream_window;
  s.epoch_at = now_;
  if (cfg_.pool != nullptr) cfg_.pool->charge(s.granted);
}

void Session::erase_stream(uint32_t id) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  if (cfg_.pool != nullptr) cfg_.pool->give_back(it->second.granted);
  streams_.erase(it);
}

std::vector<Event> Session::take_events() {
  std::vector<Event> ev;
  ev.swap(events_);
  return ev;
}

std::optional<StreamState> Session::stream_state(uint32_t id) const {
  auto it = streams_.find(id);
  if (it == streams_.end()) return std::nullopt;
  return it->second.state;
}

// ------------------------------------------------------------------ input

std::span<uint8_t> Session::input_space(size_t min) {
  input_epoch_++;
  // Drop what was parsed; the Data events that pointed into it are stale now.
  if (in_pos_ > 0) {
    in_.erase_front(in_pos_);
    in_pos_ = 0;
  }
  in_filled_ = in_.size();
  in_.resize(in_filled_ + min);
  return std::span<uint8_t>(in_.data() + in_filled_, min);
}

void Session::commit_input(size_t n, TimePoint now) {
  CT_CHECK(n <= in_.size() - in_filled_);
  in_.resize(in_filled_ + n);
  in_filled_ = in_.size();
  if (n == 0) return;
  now_ = std::max(now_, now);
  parse(now);
}

void Session::feed(Bytes in, TimePoint now) {
  auto space = input_space(in.size());
  std::copy(in.begin(), in.end(), space.begin());
  commit_input(in.size(), now);
}

void Session::parse(TimePoint now) {
  while (!dead_) {
    DecodeResult r =
        decode_frame(Bytes(in_.data(), in_.size()).subspan(in_pos_), cfg_.max_frame, version_);
    if (r.kind == DecodeResult::kNeedMore) break;
    if (r.kind == DecodeResult::kError) {
      conn_error(r.error.code, r.error.what);
      break;
    }
    in_pos_ += r.consumed;
    stats_.frames_in++;
    // Only a whole frame proves the peer alive: a peer trickling the bytes of
    // one frame must still meet the dead-peer timeout (F-04; found by
    // tests/unit/session_test.cc F04_StalledPartialFrameTimesOut).
    last_rx_ = now;
    on_frame(r.frame, now);
  }
}

void Session::transport_closed(bool clean) {
  if (dead_) return;
  // in_filled_, not in_.size(): input_space() reserved for a read that hit
  // EOF is not a partial frame (found by TransportClosedAfterAnUnusedInputSpaceIsClean).
  if (in_pos_ < in_filled_) {
    conn_error(Code::kTruncated, "transport ended inside a frame");
  } else {
    conn_error(clean ? Code::kNoError : Code::kCancel,
               clean ? "peer closed the connection" : "transport failed");
  }
}

// ------------------------------------------------------------------ frames

void Session::on_frame(const Frame& f, TimePoint now) {
  if (!ready_) {
    if (f.h.type != FrameType::kHello) return conn_error(Code::kProtocol, "frame before HELLO");
    return on_hello(f, now);
  }
  switch (f.h.type) {
    case FrameType::kHello:
      return conn_error(Code::kProtocol, "second HELLO");
    case FrameType::kOpen:
      return on_open(f);
    case FrameType::kData:
      return on_data(f);
    case FrameType::kWindow:
      return on_window(f);
    case FrameType::kReset:
      stats_.resets_in++;
      if (!charge_misbehaviour(now)) return;
      return on_reset(f);
    case FrameType::kPing:
      return on_ping(f, now);
    case FrameType::kGoAway:
      return on_goaway(f);
    case FrameType::kStatus:
      return on_status(f, now);
    case FrameType::kPins:
      return on_pins(f, now);
  }
}

void Session::on_hello(const Frame& f, TimePoint now) {
  FrameError err{Code::kProtocol, ""};
  auto h = parse_hello(f.payload, &err);
  if (!h) return conn_error(err.code, err.what);
  if (h->opener == cfg_.opener)
    return conn_error(Code::kProtocol,
                      cfg_.opener ? "both sides claim OPENER" : "neither side is OPENER");
  // The highest version both ranges hold (parse_hello checked they meet).
  const uint16_t ours = std::clamp(cfg_.max_version, kMinProtocolVersion, kProtocolVersion);
  if (h->min_version > ours) return conn_error(Code::kVersion, "no common protocol version");
  peer_ = *h;
  version_ = std::min(ours, h->max_version);
  ready_ = true;
  send_status();
  send_pins();
  conn_send_window_ = peer_.conn_window;
  // Streams opened before the peer's HELLO start with its advertised window.
  for (auto& [id, s] : streams_) s.send_window += peer_.stream_window;
  events_.push_back({Event::kReady, 0, Code::kNoError, {}, "hello"});
  // Auto-tuning needs the round trip before the first bulk stream, not at
  // the first keepalive 5 s later.
  if (auto_tuning() && ping_outstanding_ == 0) send_ping(now);
  wake_blocked();
}

void Session::on_open(const Frame& f) {
  const uint32_t id = f.h.stream;
  if (cfg_.opener) return conn_error(Code::kProtocol, "OPEN from the non-opener");
  if (id <= highest_id_) return conn_error(Code::kProtocol, "OPEN with a used stream id");
  highest_id_ = id;
  if (goaway_sent_ || streams_.size() >= cfg_.max_streams) {
    // Refused streams are charged: a peer that keeps opening past the limit
    // exhausts its budget and loses the connection (F-29).
    encode_reset(out_, id, Code::kRefused);
    stats_.resets_out++;
    control_frame_queued();
    charge_misbehaviour(last_rx_);
    return;
  }
  Stream s;
  s.send_window = peer_.stream_window;
  init_recv(s);
  auto it = streams_.emplace(id, s).first;
  if (!f.payload.empty()) {
    // §3a: a malformed origin costs that stream, never the connection. The
    // application never hears of it; the peer's in-flight DATA is the race.
    std::string_view why;
    if (!decode_origin(f.payload, &why)) {
      stats_.bad_origins++;
      bad_origin_stream_ = id;
      bad_origin_why_ = why;
      send_reset(id, it->second, Code::kProtocol);
      control_frame_queued();
      charge_misbehaviour(last_rx_);
      return;
    }
  }
  events_.push_back({Event::kOpened, id, Code::kNoError, f.payload, ""});
}

void Session::on_data(const Frame& f) {
  const uint32_t id = f.h.stream;
  const auto n = static_cast<int64_t>(f.payload.size());
  if (n > conn_recv_window_) return conn_error(Code::kFlowControl, "connection window overrun");
  conn_recv_window_ -= n;
  // Bytes count against the connection window whatever happens to the stream,
  // and are credited back at once when nobody will consume them (F-18).
  auto credit_conn = [&](uint64_t bytes) {
    conn_unacked_ += static_cast<uint32_t>(bytes);
    if (conn_unacked_ >= credit_threshold(cfg_.conn_window)) {
      encode_window(out_, 0, conn_unacked_);
      stats_.frames_out++;
      conn_recv_window_ += conn_unacked_;
      conn_unacked_ = 0;
    }
  };
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    if (!known_closed(id)) return conn_error(Code::kProtocol, "DATA on a stream never opened");
    credit_conn(f.payload.size());
    return late_frame(id, f.payload.size(), (f.h.flags & kFlagFin) != 0);
  }
  Stream& s = it->second;
  if (!can_receive(s.state)) {
    credit_conn(f.payload.size());
    // §3 / F-33: a second FIN is PROTOCOL; other DATA after FIN is STREAM_CLOSED.
    // (Found by tests/unit/session_test.cc F33_SecondFinIsStreamProtocolError.)
    if ((f.h.flags & kFlagFin) != 0)
      return stream_error(id, Code::kProtocol, "second FIN on a stream");
    return stream_error(id, Code::kStreamClosed, "DATA after FIN");
  }
  if (n > s.recv_window) {
    credit_conn(f.payload.size());
    return stream_error(id, Code::kFlowControl, "stream window overrun");
  }
  s.recv_window -= n;
  s.delivered += f.payload.size();
  stats_.bytes_in += f.payload.size();
  credit_conn(f.payload.size());
  const bool fin = (f.h.flags & kFlagFin) != 0;
  if (n > 0) events_.push_back({Event::kData, id, Code::kNoError, f.payload, ""});
  if (fin) {
    events_.push_back({Event::kFin, id, Code::kNoError, {}, ""});
    set_state(id, s, StreamInput::kRecvFin);  // may erase s
  }
}

void Session::on_window(const Frame& f) {
  const uint32_t id = f.h.stream;
  const uint32_t inc = parse_u32_payload(f.payload).value_or(0);
  if (id == 0) {
    if (inc == 0) return conn_error(Code::kProtocol, "connection WINDOW of 0");
    if (conn_send_window_ + inc > limits::kMaxWindow)
      return conn_error(Code::kFlowControl, "connection window above 2^31-1");
    conn_send_window_ += inc;
    wake_blocked();
    return;
  }
  auto it = streams_.find(id);
  if (it == streams_.end()) return late_frame(id, 0, false);  // raced with a close (F-17)
  Stream& s = it->second;
  if (inc == 0) return stream_error(id, Code::kProtocol, "stream WINDOW of 0");
  if (s.send_window + inc > limits::kMaxWindow)
    return stream_error(id, Code::kFlowControl, "stream window above 2^31-1");
  s.send_window += inc;
  if (s.blocked && capacity_of(s) > 0) {
    s.blocked = false;
    events_.push_back({Event::kWritable, id, Code::kNoError, {}, ""});
  }
}

void Session::on_reset(const Frame& f) {
  const uint32_t id = f.h.stream;
  auto it = streams_.find(id);
  if (it == streams_.end())
    return late_frame(id, 0, true);  // unknown or already reset (F-31, F-32)
  const auto code = static_cast<Code>(parse_u32_payload(f.payload).value_or(0));
  events_.push_back({Event::kReset, id, code, {}, "reset by peer"});
  set_state(id, it->second, StreamInput::kRecvReset);
}

void Session::on_ping(const Frame& f, TimePoint now) {
  ByteReader rd(f.payload);
  const uint64_t opaque = rd.u64();
  if ((f.h.flags & kFlagAck) != 0) {
    if (ping_outstanding_ == 0 || opaque != ping_outstanding_) return glitch();
    ping_outstanding_ = 0;
    stats_.pongs_in++;
    // The lesser of the last two samples: one delayed behind bulk data does
    // not count alone, and a path that became longer is followed at once.
    const Duration sample = std::max<Duration>(now - ping_sent_at_, std::chrono::microseconds(1));
    rtt_ = last_rtt_sample_ == Duration::zero() ? sample : std::min(last_rtt_sample_, sample);
    last_rtt_sample_ = sample;
    return;
  }
  encode_ping(out_, opaque, true);
  stats_.frames_out++;
  control_frame_queued();
}

void Session::on_goaway(const Frame& f) {
  auto g = parse_goaway(f.payload);
  if (!g) return conn_error(Code::kFrameSize, "GOAWAY size");
  goaway_received_ = true;
  goaway_last_ = std::min(goaway_last_, g->last_stream & limits::kMaxStreamId);
  events_.push_back({Event::kGoAway, g->last_stream, static_cast<Code>(g->code), {}, ""});
  if (!cfg_.opener) return;
  // Streams we opened above the peer's last id were never accepted.
  std::vector<uint32_t> refused;
  for (auto& [id, s] : streams_)
    if (id > goaway_last_) refused.push_back(id);
  std::sort(refused.begin(), refused.end());
  for (uint32_t id : refused) {
    events_.push_back({Event::kReset, id, Code::kRefused, {}, "above peer's GOAWAY"});
    erase_stream(id);
  }
}

void Session::on_status(const Frame& f, TimePoint now) {
  if (version_ < 2) return conn_error(Code::kProtocol, "STATUS on a version 1 connection");
  FrameError err{Code::kProtocol, ""};
  auto st = parse_status(f.payload, &err);
  if (!st) return conn_error(err.code, err.what);
  // The first is owed; every later one costs the budget, so a peer that
  // repeats STATUS cannot make us re-run the application's choice at will.
  if (peer_status_ && !charge_misbehaviour(now)) return;
  peer_status_ = *st;
  events_.push_back({Event::kStatus, 0, Code::kNoError, {}, ""});
}

void Session::set_status(const LinkStatus& s) {
  status_ = s;
  status_released_ = true;
  send_status();
}

void Session::send_status() {
  if (!ready_ || dead_ || version_ < 2 || !status_released_ || sent_status_ == status_) return;
  encode_status(out_, status_);
  sent_status_ = status_;
  stats_.frames_out++;
}

void Session::on_pins(const Frame& f, TimePoint now) {
  if (version_ < kPinsVersion)
    return conn_error(Code::kProtocol, "PINS on a connection below version 4");
  FrameError err{Code::kProtocol, ""};
  auto pins = parse_pins(f.payload, &err);
  if (!pins) return conn_error(err.code, err.what);
  // As STATUS: the first is owed, a later one (a reload) costs the budget.
  if (peer_pins_ && !charge_misbehaviour(now)) return;
  peer_pins_ = std::move(*pins);  // replaces: the peer's set as it is now
  stats_.pins_in++;
  events_.push_back({Event::kPins, 0, Code::kNoError, {}, ""});
}

void Session::set_pins(const std::vector<std::array<uint8_t, kPinSize>>& pins) {
  CT_CHECK(pins.size() <= limits::kMaxPins);
  pins_ = pins;
  send_pins();
}

void Session::send_pins() {
  if (!ready_ || dead_ || version_ < kPinsVersion || pins_.empty() || sent_pins_ == pins_) return;
  encode_pins(out_, pins_);
  sent_pins_ = pins_;
  stats_.frames_out++;
}

// ------------------------------------------------------------------ errors, budgets

void Session::conn_error(Code code, std::string_view what) {
  if (dead_) return;
  dead_ = true;
  error_code_ = code;
  // Best effort: tell the peer why, with the highest stream we accepted.
  encode_goaway(out_, cfg_.opener ? 0 : highest_id_, code);
  stats_.frames_out++;
  events_.push_back({Event::kError, 0, code, {}, what});
}

void Session::stream_error(uint32_t id, Code code, std::string_view what) {
  auto it = streams_.find(id);
  if (it == streams_.end()) return;
  events_.push_back({Event::kReset, id, code, {}, what});
  send_reset(id, it->second, code);
  control_frame_queued();
  // A reset the peer made us send costs it as much as one it sent (MadeYouReset).
  charge_misbehaviour(last_rx_);
}

bool Session::charge_misbehaviour(TimePoint now) {
  const double elapsed = std::chrono::duration<double>(now - tokens_at_).count();
  if (elapsed > 0) {
    tokens_ = std::min<double>(limits::kMisbehaviourBurst,
                               tokens_ + elapsed * limits::kMisbehaviourRefillPerSec);
    tokens_at_ = now;
  }
  if (tokens_ < 1.0) {
    conn_error(Code::kEnhanceYourCalm, "reset and glitch budget exhausted");
    return false;
  }
  tokens_ -= 1.0;
  return true;
}

void Session::glitch() {
  stats_.glitches++;
  charge_misbehaviour(last_rx_);
}

void Session::control_frame_queued() {
  if (++control_since_drain_ > limits::kMaxQueuedControlFrames)
    conn_error(Code::kEnhanceYourCalm, "peer elicits control frames without reading them");
}

void Session::send_reset(uint32_t id, Stream& s, Code code) {
  encode_reset(out_, id, code);
  stats_.frames_out++;
  stats_.resets_out++;
  // What the peer may still have in flight on it is the race, not misbehaviour.
  if (can_receive(s.state) && s.recv_window > 0) {
    reset_allowance_[id] = s.recv_window;
    reset_order_.push_back(id);
    while (reset_order_.size() > limits::kMaxResetAllowances) {
      reset_allowance_.erase(reset_order_.front());
      reset_order_.pop_front();
    }
  }
  set_state(id, s, StreamInput::kSendReset);  // may erase s
}

void Session::late_frame(uint32_t id, uint64_t data_bytes, bool ends_stream) {
  auto a = reset_allowance_.find(id);
  if (a == reset_allowance_.end() || data_bytes > static_cast<uint64_t>(a->second)) return glitch();
  // The in-flight race with our RESET, bounded by the window we had granted.
  stats_.glitches++;
  a->second -= static_cast<int64_t>(data_bytes);
  if (ends_stream || a->second == 0) reset_allowance_.erase(a);
}

bool Session::known_closed(uint32_t id) const {
  return id != 0 && id <= highest_id_;
}

void Session::set_state(uint32_t id, Stream& s, StreamInput in) {
  auto next = stream_transition(s.state, in);
  CT_CHECK(next.has_value());  // callers check legality first
  s.state = *next;
  if (s.state == StreamState::kClosed) erase_stream(id);
}

// ------------------------------------------------------------------ application side

uint32_t Session::open(Bytes origin) {
  if (dead_ || !cfg_.opener || goaway_sent_ || goaway_received_) return 0;
  // Never open beyond the peer's advertised limit: it would answer RESET
  // REFUSED and charge each refusal to our budget, so a burst of wrappers would
  // cost the whole link ENHANCE_YOUR_CALM (F-29). Our count of open streams is
  // never below the peer's when our OPEN reaches it (closes travel ahead of it).
  // (Found by tests/unit/session_test.cc F29_OpenerRespectsThePeersMaxConcurrentStreams.)
  if (streams_.size() >= peer_.max_streams) return 0;
  if (next_id_ > limits::kMaxStreamId) {
    // F-16: the id space is used up; the application dials a new connection.
    go_away(Code::kNoError);
    return 0;
  }
  const uint32_t id = next_id_++;
  highest_id_ = id;
  Stream s;
  s.send_window = ready_ ? peer_.stream_window : 0;
  init_recv(s);
  streams_.emplace(id, s);
  // Only a peer known to speak version 3 gets an origin (§3a).
  CT_CHECK(origin.size() <= limits::kMaxOriginPayload);
  encode_open(out_, id, version_ >= kOriginVersion ? origin : Bytes{});
  stats_.frames_out++;
  return id;
}

int64_t Session::capacity_of(const Stream& s) const {
  if (!can_send(s.state) || dead_) return 0;
  const int64_t out_room =
      static_cast<int64_t>(limits::kOutputHighWater) - static_cast<int64_t>(out_.size() - out_pos_);
  return std::max<int64_t>(0, std::min({s.send_window, conn_send_window_, out_room}));
}

size_t Session::send_capacity(uint32_t stream) {
  auto it = streams_.find(stream);
  if (it == streams_.end()) return 0;
  const int64_t c = capacity_of(it->second);
  if (c == 0 && !it->second.blocked && can_send(it->second.state)) {
    it->second.blocked = true;
    if (!it->second.queued) {
      it->second.queued = true;
      blocked_.push_back(stream);
    }
  }
  return static_cast<size_t>(c);
}

void Session::send(uint32_t stream, Bytes data, bool fin) {
  if (data.empty() && !fin) return;
  auto it = streams_.find(stream);
  if (it == streams_.end() || dead_) return;  // reset under the caller's feet: drop
  Stream& s = it->second;
  CT_CHECK(can_send(s.state));
  CT_CHECK(data.empty() || static_cast<int64_t>(data.size()) <= capacity_of(s));
  const uint32_t max =
      ready_ ? std::min(peer_.max_frame, limits::kMaxFramePayload) : limits::kMinFramePayload;
  do {
    const size_t n = std::min<size_t>(data.size(), max);
    const bool last = (n == data.size());
    encode_data(out_, stream, data.first(n), fin && last);
    stats_.frames_out++;
    s.send_window -= static_cast<int64_t>(n);
    conn_send_window_ -= static_cast<int64_t>(n);
    stats_.bytes_out += n;
    data = data.subspan(n);
  } while (!data.empty());
  if (fin) {
    set_state(stream, s, StreamInput::kSendFin);  // may erase s
    return;
  }
  // A sender that used up its capacity will want more: register it now, so a
  // caller that sent exactly what send_capacity() allowed is always woken.
  if (capacity_of(s) == 0 && !s.blocked) {
    s.blocked = true;
    if (!s.queued) {
      s.queued = true;
      blocked_.push_back(stream);
    }
  }
}

void Session::reset(uint32_t stream, Code code) {
  auto it = streams_.find(stream);
  if (it == streams_.end() || dead_) return;
  send_reset(stream, it->second, code);
}

void Session::consume(uint32_t stream, size_t n) {
  auto it = streams_.find(stream);
  if (it == streams_.end() || dead_) return;  // closed meanwhile: nothing to credit
  Stream& s = it->second;
  CT_CHECK(n <= s.delivered);
  s.delivered -= n;
  s.unacked += static_cast<uint32_t>(n);
  if (auto_tuning()) measure_consumption(s, n);
  if (s.unacked >= credit_threshold(s.granted) && can_receive(s.state)) {
    uint32_t inc = s.unacked;
    // A stream whose data is being consumed earns a larger window, at most
    // doubling per update (slow-start), as far as the budget has room.
    if (cfg_.pool != nullptr && s.granted < s.limit) {
      const auto extra =
          static_cast<uint32_t>(cfg_.pool->take(std::min(s.limit - s.granted, s.granted)));
      inc += extra;
      s.granted += extra;
    }
    encode_window(out_, stream, inc);
    stats_.frames_out++;
    s.recv_window += inc;
    s.unacked = 0;
  }
}

void Session::measure_consumption(Stream& s, size_t n) {
  s.epoch_bytes += n;
  // A stream moving data keeps the round trip fresh: a PING a second at
  // most, not only the keepalive's every 5 s.
  if (ping_outstanding_ == 0 && now_ - last_ping_ >= limits::kAutoTunePingInterval) send_ping(now_);
  if (rtt_ == Duration::zero() || now_ - s.epoch_at < rtt_) return;
  // Consumed at more than half the limit per round trip: the sender is held
  // by the window, not by the path or the reader, so the window doubles
  // (never beyond max_stream_window, nor half the budget, so one stream
  // cannot keep the others at their initial window). A stream that is not
  // window-bound settles at about twice its bandwidth-delay product.
  const double elapsed = std::chrono::duration<double>(now_ - s.epoch_at).count();
  const double round_trip = std::chrono::duration<double>(rtt_).count();
  const uint64_t cap = std::min<uint64_t>(cfg_.max_stream_window, cfg_.pool->limit() / 2);
  if (static_cast<double>(s.epoch_bytes) * round_trip * 2 >=
          static_cast<double>(s.limit) * elapsed &&
      s.limit < cap) {
    s.limit = static_cast<uint32_t>(std::min<uint64_t>(uint64_t{s.limit} * 2, cap));
    stats_.windows_grown++;
  }
  s.epoch_at = now_;
  s.epoch_bytes = 0;
}

void Session::go_away(Code code) {
  if (dead_ || goaway_sent_) return;
  goaway_sent_ = true;
  encode_goaway(out_, cfg_.opener ? 0 : highest_id_, code);
  stats_.frames_out++;
}

void Session::output_written(size_t n) {
  CT_CHECK(n <= out_.size() - out_pos_);
  out_pos_ += n;
  if (out_pos_ == out_.size()) {
    out_.clear();
    out_pos_ = 0;
    control_since_drain_ = 0;
  } else if (out_pos_ > limits::kOutputHighWater) {
    out_.erase(out_.begin(), out_.begin() + static_cast<std::ptrdiff_t>(out_pos_));
    out_pos_ = 0;
  }
  if (!blocked_.empty() && out_.size() - out_pos_ < limits::kOutputHighWater / 2) wake_blocked();
}

void Session::wake_blocked() {
  if (blocked_.empty()) return;
  // Each stream is queued at most once (found by make bench's profile: a
  // stream woken by its own WINDOW used to be queued again on its next stall,
  // and the queue grew with every stall of a bulk transfer).
  size_t keep = 0;
  for (uint32_t id : blocked_) {
    auto it = streams_.find(id);
    if (it == streams_.end()) continue;
    Stream& s = it->second;
    if (s.blocked && capacity_of(s) > 0) {
      s.blocked = false;
      events_.push_back({Event::kWritable, id, Code::kNoError, {}, ""});
    }
    if (s.blocked) {
      blocked_[keep++] = id;
    } else {
      s.queued = false;
    }
  }
  blocked_.resize(keep);
}

// ------------------------------------------------------------------ time

void Session::send_ping(TimePoint now) {
  ping_outstanding_ = ++ping_seq_;
  encode_ping(out_, ping_outstanding_, false);
  stats_.frames_out++;
  stats_.pings_out++;
  last_ping_ = now;
  ping_sent_at_ = now;
}

void Session::tick(TimePoint now) {
  now_ = std::max(now_, now);
  if (dead_) return;
  if (!ready_ && now - started_ >= cfg_.hello_timeout)
    return conn_error(Code::kTimeout, "no HELLO from peer in time");
  if (cfg_.ping_interval == Duration::zero()) return;
  if (now - last_rx_ >= cfg_.dead_timeout)
    return conn_error(Code::kTimeout, "peer silent beyond the dead-peer timeout");
  if (ready_ && ping_outstanding_ == 0 && now - last_ping_ >= cfg_.ping_interval) {
    send_ping(now);
  } else if (ping_outstanding_ != 0 && now - last_ping_ >= cfg_.ping_interval) {
    last_ping_ = now;  // still waiting; the dead-peer timeout decides
  }
}

TimePoint Session::next_deadline() const {
  if (dead_) return TimePoint::max();
  TimePoint t = TimePoint::max();
  if (!ready_) t = started_ + cfg_.hello_timeout;
  if (cfg_.ping_interval != Duration::zero()) {
    t = std::min(t, last_rx_ + cfg_.dead_timeout);
    if (ready_) t = std::min(t, last_ping_ + cfg_.ping_interval);
  }
  return t;
}

}  // namespace ct
