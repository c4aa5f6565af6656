// The one clock of the code base: steady (monotonic) time. Sans-IO layers take
// a TimePoint as an argument and never read the clock themselves.
#pragma once

#include <chrono>

namespace ct {

using Clock = std::chrono::steady_clock;
using TimePoint = Clock::time_point;
using Duration = Clock::duration;

}  // namespace ct
