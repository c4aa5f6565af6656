// The bridge's view of its OpenBao: a GET of the health endpoint every
// --vault-health-interval, its answer's status code mapped to an UpstreamState
// (shared/wire/frame.h), which the bridge tells every broker in STATUS. Sans-IO:
// the TLS process opens the probe's stream on the data channel (the forwarding
// process connects to OpenBao as for any stream), feeds the answer's bytes in
// (after its own TLS client, with an https:// --vault-addr) and passes the
// time; this file never touches a socket or reads the clock.
//
// Only the status line is read, at most kMaxHealthAnswer bytes in all: the code
// is what OpenBao documents as the answer (the JSON body says the same again).
#pragma once

#include <chrono>
#include <optional>
#include <string>

#include "shared/base/bytes.h"
#include "shared/base/time.h"
#include "shared/wire/frame.h"

namespace ct::bridge {

// What one probe may read from OpenBao, status line and all: more is
// dropped (the stream reset), and a status line not complete within
// kMaxHealthStatusLine bytes is a malformed answer.
inline constexpr size_t kMaxHealthAnswer = 4096;
inline constexpr size_t kMaxHealthStatusLine = 256;
// What a probe over TLS (an https:// --vault-addr) may read, ciphertext:
// OpenBao's handshake (its certificate chain, a few KiB) and the answer's
// records (kMaxHealthAnswer of plaintext). More: unreachable.
inline constexpr size_t kMaxHealthTlsAnswer = 64 * 1024;
// A probe not answered (its stream not ended) within this long: unreachable.
// OpenBao answers sys/health from memory; 2 s is a host in trouble.
inline constexpr auto kHealthProbeTimeout = std::chrono::seconds(2);
// How soon a probe that found no data channel tries again.
inline constexpr auto kHealthRetry = std::chrono::milliseconds(100);
// --vault-health-interval's default and its largest value.
inline constexpr unsigned kDefaultHealthIntervalSec = 5;
inline constexpr unsigned kMaxHealthIntervalSec = 3600;

// OpenBao's sys/health codes (its defaults, no query parameters): 200 active,
// 429 standby, 473 performance standby, 501 not initialised, 503 sealed.
// 472 (a disaster-recovery secondary) serves no client request, reads
// included, and forwards none to the primary: unreachable from a wrapper's
// point of view, so it is mapped there (no state of its own). Anything else
// (404 from a server that is not OpenBao, 5xx from a proxy): unreachable.
UpstreamState upstream_state_of_http(int code);

// The request: HTTP/1.1 GET of `path` (valid_health_path, shared/ipc/msgs.h)
// with `host` as Host, and Connection: close, so that OpenBao ends the
// exchange and the stream closes cleanly. No FIN after it: Go's HTTP server
// may cancel a request whose client half-closed.
std::string health_request(const std::string& path, const std::string& host);

// One answer, fed as it arrives. Decided at the end of the status line
// (`HTTP/1.0` or `HTTP/1.1`, a space, three digits, then a space or the
// CRLF): its code's state; anything else, or no CRLF within
// kMaxHealthStatusLine bytes: unreachable.
class HealthAnswer {
 public:
  // Takes bytes; returns the state once decided (and on every later call).
  std::optional<UpstreamState> feed(Bytes b);
  // More than kMaxHealthAnswer bytes came: the probe should end its stream.
  bool over_cap() const { return total_ > kMaxHealthAnswer; }
  const std::optional<UpstreamState>& result() const { return result_; }

 private:
  std::string line_;  // the status line so far, at most kMaxHealthStatusLine bytes
  size_t total_ = 0;
  std::optional<UpstreamState> result_;
};

// A change of the state the bridge reports.
struct HealthChange {
  UpstreamState from, to;
};

// When to probe, one probe at a time, and the state the probes found.
// interval zero: never (the state stays unknown).
class HealthPoller {
 public:
  HealthPoller() = default;
  HealthPoller(Duration interval, Duration timeout) : interval_(interval), timeout_(timeout) {}

  bool enabled() const { return interval_ > Duration::zero(); }
  UpstreamState state() const { return state_; }
  bool in_flight() const { return in_flight_; }
  // Polling starts (the first probe is due at `now`), or stops (a drain).
  void start(TimePoint now) { next_ = enabled() ? now : TimePoint::max(); }
  void stop() { next_ = TimePoint::max(); }
  // Time for a new probe: none in flight and its turn came.
  bool due(TimePoint now) const { return enabled() && !in_flight_ && now >= next_; }
  // The probe in flight ran out of time: the caller resets its stream and
  // calls end().
  bool expired(TimePoint now) const { return in_flight_ && now >= deadline_; }
  TimePoint next_deadline() const { return in_flight_ ? deadline_ : next_; }

  // A probe is due but no stream can be opened (the data channel to the
  // forwarding process is not up: starting, or its process restarting).
  // True: try again shortly (next_deadline says when). False: it has been
  // so for a whole probe timeout, which counts as a probe that failed: the
  // caller calls begin() and end().
  bool defer(TimePoint now);
  // A probe's stream opens now.
  void begin(TimePoint now);
  // Bytes of its answer. A change as soon as the status line decides it.
  std::optional<HealthChange> feed(Bytes b);
  // The answer must not be read further (over the cap): reset the stream.
  bool over_cap() const { return answer_.over_cap(); }
  // The probe's stream ended (FIN, reset, time out, no data channel): an
  // undecided answer means unreachable. The next one is due an interval after
  // this one began.
  std::optional<HealthChange> end(TimePoint now);
  // The probe's stream went away for a reason of ours, not OpenBao's (a
  // drain, the forwarding process restarting): no verdict, the state stays,
  // and (unless stopped) the next probe is due at once.
  void abandon(TimePoint now);

 private:
  std::optional<HealthChange> set(UpstreamState s);

  Duration interval_{};
  Duration timeout_{};
  UpstreamState state_ = UpstreamState::kUnknown;
  bool in_flight_ = false;
  bool applied_ = false;  // this probe's answer already set the state
  TimePoint began_{}, deadline_ = TimePoint::max(), next_ = TimePoint::max();
  TimePoint deferred_since_ = TimePoint::max();  // the due probe waits for a channel
  HealthAnswer answer_;
};

}  // namespace ct::bridge
