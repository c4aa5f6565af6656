// Beacon mode, the broker's side (docs/beacon.md §2): it keeps `per_beacon`
// connections waiting at every beacon, like a listen backlog, and dials a new
// one each time one is paired or lost. Sans-IO: the TLS process asks which
// beacon to dial now (one dial at a time), reports what happened, and acts.
//
// Backoff per beacon, as the bridge's redials (limits.h kRedial*): a failure
// that cost the beacon nothing (no connection, a reset, a waiting connection
// the beacon dropped) waits a uniform 250-500 ms; one that the same
// configuration repeats (TLS, the beacon's certificate, a refusal) waits full
// jitter over 1 s doubling to 30 s, never under 250 ms. A pairing resets it.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <vector>

#include "shared/base/time.h"

namespace ct::broker {

class BeaconPool {
 public:
  using Jitter = std::function<long long(long long lo, long long hi)>;
  BeaconPool(size_t beacons, size_t per_beacon, Jitter jitter);

  // The beacon to dial now, if any (the dial is then in flight until
  // on_dialed or on_dial_failed).
  std::optional<size_t> due(TimePoint now);
  TimePoint next_deadline() const;
  // The parent connected: a connection to `b` now waits (its TLS, preamble).
  void on_dialed();
  // The parent could not connect (the dial in flight).
  void on_dial_failed(TimePoint now);
  // A waiting connection to `b` was paired: one place to refill.
  void on_paired(size_t b);
  // A waiting connection to `b` ended unpaired; `expensive` as above.
  void on_lost(size_t b, bool expensive, TimePoint now);
  // No more dials (drain).
  void stop() { stopped_ = true; }

  size_t waiting(size_t b) const { return beacons_.at(b).waiting; }
  bool dialing() const { return dialing_.has_value(); }

 private:
  struct Beacon {
    size_t waiting = 0;
    unsigned failures = 0;  // expensive ones in a row
    TimePoint not_before{};
  };
  void back_off(Beacon& b, bool expensive, TimePoint now);
  std::vector<Beacon> beacons_;
  size_t per_beacon_;
  Jitter jitter_;
  std::optional<size_t> dialing_;
  bool stopped_ = false;
};

}  // namespace ct::broker
