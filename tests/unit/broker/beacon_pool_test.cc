// The broker's pool of waiting beacon connections (broker/beacon_pool.h) on a
// fake clock: it fills every beacon to its size one dial at a time, refills
// a place when a connection is paired or lost, and backs off per beacon
// without a tight loop.
#include "broker/beacon_pool.h"

#include <gtest/gtest.h>

namespace ct::broker {
namespace {

using namespace std::chrono_literals;
const TimePoint t0 = TimePoint() + 1h;

// Jitter that always picks the top of the range (the longest wait).
long long top(long long, long long hi) {
  return hi;
}
long long bottom(long long lo, long long) {
  return lo;
}

TEST(BeaconPool, FillsEveryBeaconOneDialAtATime) {
  BeaconPool p(2, 2, top);
  std::vector<size_t> dialled;
  for (int i = 0; i < 10; i++) {
    auto b = p.due(t0);
    if (!b) break;
    EXPECT_FALSE(p.due(t0)) << "a second dial while one is in flight";
    dialled.push_back(*b);
    p.on_dialed();
  }
  EXPECT_EQ(dialled, (std::vector<size_t>{0, 1, 0, 1}));
  EXPECT_EQ(p.waiting(0), 2u);
  EXPECT_EQ(p.next_deadline(), TimePoint::max());  // full: nothing to do
  // A pairing frees a place: refilled at once.
  p.on_paired(1);
  EXPECT_EQ(p.due(t0), std::optional<size_t>(1));
}

TEST(BeaconPool, CheapFailuresWaitAQuarterToHalfASecond) {
  BeaconPool p(1, 1, top);
  ASSERT_TRUE(p.due(t0));
  p.on_dial_failed(t0);
  EXPECT_FALSE(p.due(t0 + 499ms));
  EXPECT_EQ(p.next_deadline(), t0 + 500ms);
  ASSERT_TRUE(p.due(t0 + 500ms));
  p.on_dialed();
  // The beacon dropped the waiting connection (a restart): as cheap.
  p.on_lost(0, false, t0 + 1s);
  EXPECT_EQ(p.next_deadline(), t0 + 1500ms);
}

TEST(BeaconPool, ExpensiveFailuresDoubleToTheCapAndAPairingResets) {
  BeaconPool p(1, 1, top);
  TimePoint now = t0;
  std::vector<long long> waits;
  for (int i = 0; i < 8; i++) {
    ASSERT_TRUE(p.due(now));
    p.on_dialed();
    p.on_lost(0, true, now);
    waits.push_back(
        std::chrono::duration_cast<std::chrono::milliseconds>(p.next_deadline() - now).count());
    now = p.next_deadline();
  }
  EXPECT_EQ(waits, (std::vector<long long>{1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000}));
  ASSERT_TRUE(p.due(now));
  p.on_dialed();
  p.on_paired(0);
  ASSERT_TRUE(p.due(now));
  p.on_dialed();
  p.on_lost(0, true, now);
  EXPECT_EQ(p.next_deadline(), now + 1s);
}

TEST(BeaconPool, FullJitterNeverBecomesATightLoop) {
  BeaconPool p(1, 1, bottom);  // jitter picks 0 for the expensive wait
  ASSERT_TRUE(p.due(t0));
  p.on_dialed();
  p.on_lost(0, true, t0);
  EXPECT_EQ(p.next_deadline(), t0 + 250ms);
}

TEST(BeaconPool, AFailingBeaconDoesNotHoldBackTheOthers) {
  BeaconPool p(2, 1, top);
  ASSERT_EQ(p.due(t0), std::optional<size_t>(0));
  p.on_dial_failed(t0);
  EXPECT_EQ(p.due(t0), std::optional<size_t>(1));
  p.on_dialed();
  EXPECT_FALSE(p.due(t0 + 100ms));  // 0 backs off, 1 is full
  p.stop();
  EXPECT_FALSE(p.due(t0 + 1h));
  EXPECT_EQ(p.next_deadline(), TimePoint::max());
}

}  // namespace
}  // namespace ct::broker
