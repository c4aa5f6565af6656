// Deadlines as timers: each user owns a Timer and arms it at an absolute
// TimePoint; the heap keeps only armed timers, so an idle user costs nothing
// until its deadline. Clock-free (run_due takes `now`), so the loop passes
// the real clock and unit tests a fake one.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <vector>

#include "shared/base/time.h"

namespace ct {

class TimerHeap;

// Owned by its user; destroying it cancels it. Not movable: the heap points
// at it. A callback may arm, cancel or destroy any other timer and re-arm its
// own, but must not destroy its own Timer (retire the owner instead).
class Timer {
 public:
  using Callback = std::function<void(TimePoint now)>;
  Timer(TimerHeap& heap, Callback cb) : heap_(heap), cb_(std::move(cb)) {}
  ~Timer() { cancel(); }
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;

  // Arms (or re-arms, earlier or later) for `at`; TimePoint::max() cancels.
  void arm(TimePoint at);
  void cancel();
  bool armed() const { return index_ != kNone; }
  // TimePoint::max() when not armed.
  TimePoint deadline() const { return armed() ? at_ : TimePoint::max(); }

 private:
  friend class TimerHeap;
  static constexpr size_t kNone = SIZE_MAX;
  TimerHeap& heap_;
  Callback cb_;
  TimePoint at_{};
  uint64_t seq_ = 0;  // arming order: equal deadlines fire first-armed first
  size_t index_ = kNone;
};

class TimerHeap {
 public:
  TimerHeap() = default;
  TimerHeap(const TimerHeap&) = delete;
  TimerHeap& operator=(const TimerHeap&) = delete;

  // The earliest armed deadline; TimePoint::max() when none is armed.
  TimePoint next() const { return heap_.empty() ? TimePoint::max() : heap_.front()->at_; }
  size_t size() const { return heap_.size(); }
  // Fires, in deadline order, the timers due at `now` that were armed before
  // this call; one armed by a callback fires in the next call at the
  // earliest (with any due timer ordered after it), so a callback that
  // re-arms for `now` cannot spin here; the loop's next wait is then zero.
  // Each timer is disarmed before its callback runs. Returns how many fired.
  size_t run_due(TimePoint now);

 private:
  friend class Timer;
  void insert(Timer* t);
  void remove(Timer* t);
  bool before(size_t a, size_t b) const;
  void place(size_t i, Timer* t);
  void sift_up(size_t i);
  void sift_down(size_t i);
  std::vector<Timer*> heap_;
  uint64_t next_seq_ = 0;
};

}  // namespace ct
