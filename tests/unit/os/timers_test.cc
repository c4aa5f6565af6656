// The timer heap on a fake clock (order, cancel, re-arm, callbacks that touch
// other timers) and the loop waking for its earliest timer on the real one.
#include "shared/os/timers.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "shared/os/loop.h"

namespace ct {
namespace {

using std::chrono::milliseconds;

const TimePoint t0 = TimePoint{} + std::chrono::hours(1);

// A timer that records its name in `log` when it fires.
struct Named {
  Named(TimerHeap& h, std::vector<std::string>& log, std::string name)
      : timer(h, [&log, name](TimePoint) { log.push_back(name); }) {}
  Timer timer;
};

TEST(Timers, FireInDeadlineOrderAndOnlyWhenDue) {
  TimerHeap h;
  std::vector<std::string> log;
  Named a(h, log, "a"), b(h, log, "b"), c(h, log, "c");
  c.timer.arm(t0 + milliseconds(30));
  a.timer.arm(t0 + milliseconds(10));
  b.timer.arm(t0 + milliseconds(20));
  EXPECT_EQ(h.next(), t0 + milliseconds(10));
  EXPECT_EQ(h.run_due(t0 + milliseconds(9)), 0u);
  EXPECT_EQ(h.run_due(t0 + milliseconds(20)), 2u);
  EXPECT_EQ(log, (std::vector<std::string>{"a", "b"}));
  EXPECT_FALSE(a.timer.armed());  // one-shot: disarmed before it fires
  EXPECT_EQ(h.next(), t0 + milliseconds(30));
  EXPECT_EQ(h.run_due(t0 + milliseconds(100)), 1u);
  EXPECT_EQ(h.next(), TimePoint::max());
  EXPECT_EQ(h.size(), 0u);
}

TEST(Timers, EqualDeadlinesFireInArmingOrder) {
  TimerHeap h;
  std::vector<std::string> log;
  Named a(h, log, "a"), b(h, log, "b"), c(h, log, "c");
  b.timer.arm(t0);
  c.timer.arm(t0);
  a.timer.arm(t0);
  h.run_due(t0);
  EXPECT_EQ(log, (std::vector<std::string>{"b", "c", "a"}));
}

TEST(Timers, CancelledTimerNeverFires) {
  TimerHeap h;
  std::vector<std::string> log;
  Named a(h, log, "a"), b(h, log, "b");
  a.timer.arm(t0);
  b.timer.arm(t0 + milliseconds(1));
  a.timer.cancel();
  a.timer.cancel();  // twice is harmless
  EXPECT_EQ(h.next(), t0 + milliseconds(1));
  h.run_due(t0 + milliseconds(5));
  EXPECT_EQ(log, (std::vector<std::string>{"b"}));
}

TEST(Timers, ArmingAtMaxCancels) {
  TimerHeap h;
  std::vector<std::string> log;
  Named a(h, log, "a");
  a.timer.arm(t0);
  a.timer.arm(TimePoint::max());
  EXPECT_FALSE(a.timer.armed());
  EXPECT_EQ(h.run_due(TimePoint::max() - milliseconds(1)), 0u);
}

TEST(Timers, DestroyedTimerLeavesTheHeap) {
  TimerHeap h;
  std::vector<std::string> log;
  Named a(h, log, "a");
  auto b = std::make_unique<Named>(h, log, "b");
  b->timer.arm(t0);
  a.timer.arm(t0 + milliseconds(1));
  b.reset();
  EXPECT_EQ(h.size(), 1u);
  h.run_due(t0 + milliseconds(1));
  EXPECT_EQ(log, (std::vector<std::string>{"a"}));
}

TEST(Timers, ReArmLaterAndEarlier) {
  TimerHeap h;
  std::vector<std::string> log;
  Named a(h, log, "a"), b(h, log, "b");
  a.timer.arm(t0 + milliseconds(10));
  b.timer.arm(t0 + milliseconds(20));
  a.timer.arm(t0 + milliseconds(30));  // later: b is now first
  EXPECT_EQ(a.timer.deadline(), t0 + milliseconds(30));
  EXPECT_EQ(h.next(), t0 + milliseconds(20));
  EXPECT_EQ(h.run_due(t0 + milliseconds(10)), 0u);
  b.timer.arm(t0 + milliseconds(40));
  a.timer.arm(t0 + milliseconds(5));  // earlier: a is first again
  EXPECT_EQ(h.next(), t0 + milliseconds(5));
  h.run_due(t0 + milliseconds(100));
  EXPECT_EQ(log, (std::vector<std::string>{"a", "b"}));
}

TEST(Timers, CallbackCancelsAnotherDueTimer) {
  TimerHeap h;
  std::vector<std::string> log;
  Named b(h, log, "b");
  Timer a(h, [&](TimePoint) {
    log.push_back("a");
    b.timer.cancel();
  });
  a.arm(t0);
  b.timer.arm(t0 + milliseconds(1));
  EXPECT_EQ(h.run_due(t0 + milliseconds(1)), 1u);
  EXPECT_EQ(log, (std::vector<std::string>{"a"}));
  EXPECT_EQ(h.size(), 0u);
}

TEST(Timers, CallbackDestroysAnotherDueTimer) {
  TimerHeap h;
  std::vector<std::string> log;
  auto b = std::make_unique<Named>(h, log, "b");
  Timer a(h, [&](TimePoint) {
    log.push_back("a");
    b.reset();
  });
  a.arm(t0);
  b->timer.arm(t0);
  h.run_due(t0);
  EXPECT_EQ(log, (std::vector<std::string>{"a"}));
}

TEST(Timers, TimerAddedByACallbackFiresInTheNextRun) {
  TimerHeap h;
  std::vector<std::string> log;
  Named b(h, log, "b");
  Timer a(h, [&](TimePoint now) {
    log.push_back("a");
    b.timer.arm(now);  // already due, but armed during the run
  });
  a.arm(t0);
  EXPECT_EQ(h.run_due(t0), 1u);
  EXPECT_EQ(log, (std::vector<std::string>{"a"}));
  EXPECT_EQ(h.next(), t0);
  EXPECT_EQ(h.run_due(t0), 1u);
  EXPECT_EQ(log, (std::vector<std::string>{"a", "b"}));
}

TEST(Timers, SelfReArmingCallbackCannotSpinOneRun) {
  TimerHeap h;
  int fired = 0;
  Timer a(h, [&](TimePoint now) {
    fired++;
    a.arm(now);  // re-arms itself for the same instant
  });
  a.arm(t0);
  EXPECT_EQ(h.run_due(t0), 1u);
  EXPECT_EQ(fired, 1);
  EXPECT_TRUE(a.armed());
}

TEST(Timers, CallbackReArmsItselfLater) {
  TimerHeap h;
  std::vector<TimePoint> at;
  Timer a(h, [&](TimePoint now) {
    at.push_back(now);
    if (at.size() < 3) a.arm(now + milliseconds(10));
  });
  a.arm(t0);
  for (int i = 0; i <= 40; i += 5) h.run_due(t0 + milliseconds(i));
  EXPECT_EQ(at, (std::vector<TimePoint>{t0, t0 + milliseconds(10), t0 + milliseconds(20)}));
  EXPECT_FALSE(a.armed());
}

// Against a sorted model: random arms, re-arms and cancels keep the heap's
// firing order exactly the model's (deadline, then arming order).
TEST(Timers, RandomOperationsMatchAModel) {
  TimerHeap h;
  std::vector<int> fired;
  std::vector<std::unique_ptr<Timer>> ts;
  for (int i = 0; i < 64; i++)
    ts.push_back(std::make_unique<Timer>(h, [&fired, i](TimePoint) { fired.push_back(i); }));
  std::mt19937 rng(7);
  // model: deadline and arming order per timer, or none
  std::vector<std::pair<long, uint64_t>> model(64, {-1, 0});
  uint64_t seq = 0;
  for (int round = 0; round < 2000; round++) {
    const size_t i = rng() % 64;
    if (rng() % 4 == 0) {
      ts[i]->cancel();
      model[i] = {-1, 0};
    } else {
      const long ms = static_cast<long>(rng() % 1000);
      const bool same = model[i].first == ms;
      ts[i]->arm(t0 + milliseconds(ms));
      if (!same) model[i] = {ms, seq++};
    }
  }
  std::vector<std::pair<std::pair<long, uint64_t>, int>> expect;
  for (int i = 0; i < 64; i++)
    if (model[static_cast<size_t>(i)].first >= 0)
      expect.push_back({model[static_cast<size_t>(i)], i});
  std::sort(expect.begin(), expect.end());
  EXPECT_EQ(h.size(), expect.size());
  h.run_due(t0 + milliseconds(1000));
  std::vector<int> want;
  for (auto& e : expect) want.push_back(e.second);
  EXPECT_EQ(fired, want);
}

// The loop sleeps until the earliest timer, not a fixed poll, and fires it
// from run_once with no fd ready.
TEST(LoopTimers, RunOnceWakesForTheEarliestTimer) {
  Loop loop;
  int early = 0, late = 0;
  Timer a(loop.timers(), [&](TimePoint) { early++; });
  Timer b(loop.timers(), [&](TimePoint) { late++; });
  const auto start = Clock::now();
  b.arm(start + std::chrono::seconds(30));
  a.arm(start + milliseconds(20));
  ASSERT_TRUE(loop.run_once());
  const auto took = Clock::now() - start;
  EXPECT_EQ(early, 1);
  EXPECT_EQ(late, 0);
  EXPECT_GE(took, milliseconds(20));
  EXPECT_LT(took, std::chrono::seconds(5));
}

TEST(LoopTimers, RunOnceHonoursAnEarlierCallerDeadline) {
  Loop loop;
  int fired = 0;
  Timer a(loop.timers(), [&](TimePoint) { fired++; });
  const auto start = Clock::now();
  a.arm(start + std::chrono::seconds(30));
  ASSERT_TRUE(loop.run_once(start + milliseconds(10)));
  EXPECT_EQ(fired, 0);
  EXPECT_LT(Clock::now() - start, std::chrono::seconds(5));
}

}  // namespace
}  // namespace ct
