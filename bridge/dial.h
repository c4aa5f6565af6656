// The bridge TLS process's redial machine: when to ask the parent for a new
// connection to the broker, and how long to wait after each kind of failure.
// Sans-IO: the TLS process feeds it what happened (a dial result, a link that
// came up or ended, the time) and asks whether to send DIAL_REQUEST now and
// when to ask again. No fds, no clock reads.
//
// Backoff (limits.h, kRedial*): a failure that cost the broker nothing (the
// connection refused or reset, no route, a lookup failure, a link that was up
// and ended) waits a uniform 250-500 ms; a failure that cost the broker a
// handshake or that the same configuration repeats (TLS, certificate, pin)
// waits full jitter over 1 s doubling to 30 s. A link that completes its
// HELLO proves the configuration works and resets the doubling.
//
// Several broker replicas (docs/architecture.md, "Links to every replica"):
// the TLS process wants a link to each distinct broker instance. Every
// "do we want a link" question below takes `satisfied`: true when the usable
// links reach as many distinct instances as the brokers say they run. While
// some instance is missing the bridge hunts: it dials again through the same
// address (the load balancer picks the replica), and a link that reaches an
// instance it already holds is closed as a duplicate and costs a hunting
// wait: 100-250 ms for the first kHuntFastDials (at most 10 dials a second),
// then full jitter over 1 s doubling to 30 s, never under 250 ms. Linking a
// new instance resets the hunt. With every replica linked the bridge still
// dials every 2-4 s (sync) so that a rollout's surge replica gets a link.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "shared/base/log.h"
#include "shared/base/time.h"

namespace ct::bridge {

// Why a connection to the broker failed, and whether retrying soon is cheap
// for the broker (nothing reached its TLS process) or not (a handshake, or a
// configuration error that the next attempt repeats).
struct DialFailure {
  const char* cls;
  bool expensive;
};
// The parent's DIAL_FAILED text: the connection never reached TLS.
DialFailure classify_dial_failure(const std::string& why);
// A link that ended before its HELLO completed, from its close reason.
DialFailure classify_link_failure(const std::string& why);

class Redialer {
 public:
  // idle: nothing planned (a link is up, or draining); waiting: a dial is due
  // at next_deadline(); dialing: DIAL_REQUEST sent, its answer not yet here.
  enum class State { kIdle, kWaiting, kDialing };
  // A uniform draw from [lo, hi] in milliseconds: the jitter. Tests pass one
  // that returns a bound to see the exact schedule.
  using Jitter = std::function<long long(long long lo, long long hi)>;
  explicit Redialer(Jitter jitter);

  // Certificate material is loaded, or the broker sent GOAWAY on the link in
  // use: dial at once unless a dial is already planned or in flight.
  void dial_soon(TimePoint now);
  // True when the TLS process must send DIAL_REQUEST now (the state becomes
  // dialing: never a second request while one is in flight). A due dial is
  // dropped when the links became satisfying meanwhile.
  bool due(TimePoint now, bool satisfied);
  // The parent's answer. False: we never asked (a bad internal message).
  bool on_dialed();
  bool on_dial_failed(const std::string& why, TimePoint now);
  // A link completed its HELLO.
  void on_link_up() { attempt_ = 0; }
  // A link to the broker ended (conn is its id, was_up whether it completed
  // its HELLO). Plans the next dial unless the links left are satisfying or
  // a dial is already planned or in flight.
  void on_link_closed(uint64_t conn, bool was_up, const std::string& why, bool satisfied,
                      TimePoint now);
  // Hunting: a link reached an instance not held before (resets the hunt).
  void on_new_instance() { hunt_ = 0; }
  // A link reached an instance already held (the caller closes it): the next
  // hunting dial waits longer the more duplicates in a row.
  void on_duplicate(TimePoint now);
  // Plans a hunting dial when none is planned or in flight and an instance is
  // missing (the caller checks that no link is still in its handshake).
  void hunt(TimePoint now);
  // Every replica is linked, but a rolling update may be adding one: plans a
  // dial in 2-4 s when none is planned or in flight (kSyncDial*).
  void sync(TimePoint now);
  unsigned hunt_count() const { return hunt_; }
  // No more dials: the process is draining.
  void drain();

  TimePoint next_deadline() const {
    return state_ == State::kWaiting ? next_dial_ : TimePoint::max();
  }
  State state() const { return state_; }
  // Expensive failures since the last link that completed its HELLO.
  unsigned attempt() const { return attempt_; }
  // The wait chosen by the last failure.
  Duration last_delay() const { return last_delay_; }

 private:
  // Schedules the next dial after a failure of class f.cls, and says so at
  // most once per interval per class (a broker that is down, or a peer that
  // fails every handshake, would otherwise write lines at will).
  void retry_after(DialFailure f, const char* what, const std::string& why, TimePoint now);

  Jitter jitter_;
  State state_ = State::kIdle;
  TimePoint next_dial_ = TimePoint::max();
  Duration last_delay_ = Duration::zero();
  unsigned attempt_ = 0;
  unsigned hunt_ = 0;  // duplicates in a row since the last new instance
  bool draining_ = false;
  log::Throttle hunt_log_;
  std::map<std::string, log::Throttle> retry_log_;  // one per failure class
};

}  // namespace ct::bridge
