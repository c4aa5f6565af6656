// log::Throttle: one line per interval, and the next line counts what was held back.
#include "shared/log.h"

#include <gtest/gtest.h>

namespace ct::log {
namespace {

TEST(LogThrottle, FirstLineGoesOutThenOnePerIntervalWithTheHeldBackCount) {
  Throttle t(std::chrono::seconds(10));
  const auto t0 = Throttle::Clock::time_point{} + std::chrono::hours(1);
  uint64_t held = 99;
  ASSERT_TRUE(t.allow(t0, &held));
  EXPECT_EQ(held, 0u);
  for (int i = 0; i < 1000; i++) EXPECT_FALSE(t.allow(t0 + std::chrono::milliseconds(i), &held));
  EXPECT_FALSE(t.allow(t0 + std::chrono::milliseconds(9999), &held));
  ASSERT_TRUE(t.allow(t0 + std::chrono::seconds(10), &held));
  EXPECT_EQ(held, 1001u);
  // The interval restarts at the line that was written.
  EXPECT_FALSE(t.allow(t0 + std::chrono::seconds(19), &held));
  ASSERT_TRUE(t.allow(t0 + std::chrono::seconds(20), &held));
  EXPECT_EQ(held, 1u);
}

}  // namespace
}  // namespace ct::log
