#include "shared/parent/drain.h"

namespace ct {

Drain::Begin Drain::begin(TimePoint now, Duration timeout) {
  switch (phase_) {
    case Phase::kDraining:
      return Begin::kAlready;
    case Phase::kStarting:
      phase_ = Phase::kDraining;
      drain_deadline_ = now;
      return Begin::kExitNow;
    case Phase::kRunning:
      break;
  }
  phase_ = Phase::kDraining;
  drain_deadline_ = now + timeout;
  return Begin::kDraining;
}

}  // namespace ct
