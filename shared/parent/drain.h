// The parent's phases and their deadlines: starting (until the TLS process is
// ready, or the start-up deadline ends the parent), running, and draining
// (until the children are gone or the drain deadline passes).
#pragma once

#include "shared/base/time.h"

namespace ct {

class Drain {
 public:
  enum class Phase { kStarting, kRunning, kDraining };
  // What a SIGTERM/SIGINT means in the phase it arrives in.
  enum class Begin {
    kAlready,   // draining already: nothing more to do
    kExitNow,   // still starting: nothing to drain, the parent exits at once
    kDraining,  // running: tell the children, wait up to the timeout
  };

  void start(TimePoint now, Duration startup_timeout) {
    phase_ = Phase::kStarting;
    startup_deadline_ = now + startup_timeout;
  }
  // The TLS process is ready. False unless this ends the start.
  bool ready() {
    if (phase_ != Phase::kStarting) return false;
    phase_ = Phase::kRunning;
    return true;
  }
  Begin begin(TimePoint now, Duration timeout);
  Phase phase() const { return phase_; }
  bool running() const { return phase_ == Phase::kRunning; }
  bool draining() const { return phase_ == Phase::kDraining; }
  bool startup_expired(TimePoint now) const {
    return phase_ == Phase::kStarting && now >= startup_deadline_;
  }
  // Draining is over once no child is left or the deadline passed.
  bool over(TimePoint now, bool children_alive) const {
    return phase_ == Phase::kDraining && (!children_alive || now >= drain_deadline_);
  }
  // The deadline of the phase (start-up or drain; max while running).
  TimePoint deadline() const {
    if (phase_ == Phase::kStarting) return startup_deadline_;
    return phase_ == Phase::kDraining ? drain_deadline_ : TimePoint::max();
  }

 private:
  Phase phase_ = Phase::kStarting;
  TimePoint startup_deadline_ = TimePoint::max();
  TimePoint drain_deadline_ = TimePoint::max();
};

}  // namespace ct
