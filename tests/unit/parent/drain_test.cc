#include "shared/parent/drain.h"

#include <gtest/gtest.h>

#include <chrono>

namespace ct {
namespace {

using std::chrono::nanoseconds;
using std::chrono::seconds;

const TimePoint t0 = TimePoint(std::chrono::hours(1));

TEST(Drain, StartingEndsAtTheStartupDeadlineUnlessReady) {
  Drain d;
  d.start(t0, seconds(10));
  EXPECT_EQ(d.deadline(), t0 + seconds(10));
  EXPECT_FALSE(d.startup_expired(t0 + seconds(10) - nanoseconds(1)));
  EXPECT_TRUE(d.startup_expired(t0 + seconds(10)));
  EXPECT_TRUE(d.ready());
  EXPECT_FALSE(d.ready());  // only the first READY ends the start
  EXPECT_FALSE(d.startup_expired(t0 + seconds(60)));
  EXPECT_EQ(d.deadline(), TimePoint::max());
}

TEST(Drain, ATermWhileStartingExitsAtOnce) {
  Drain d;
  d.start(t0, seconds(10));
  EXPECT_EQ(d.begin(t0 + seconds(1), seconds(30)), Drain::Begin::kExitNow);
  EXPECT_TRUE(d.over(t0 + seconds(1), /*children_alive=*/true));
}

TEST(Drain, DrainingLastsUntilTheChildrenAreGoneOrTheDeadline) {
  Drain d;
  d.start(t0, seconds(10));
  d.ready();
  const TimePoint term = t0 + seconds(5);
  EXPECT_FALSE(d.over(term, false));  // not draining: nothing is over
  ASSERT_EQ(d.begin(term, seconds(30)), Drain::Begin::kDraining);
  EXPECT_EQ(d.deadline(), term + seconds(30));
  EXPECT_FALSE(d.over(term + seconds(30) - nanoseconds(1), true));
  EXPECT_TRUE(d.over(term + seconds(1), false));
  EXPECT_TRUE(d.over(term + seconds(30), true));
  // A second SIGTERM does not move the deadline.
  EXPECT_EQ(d.begin(term + seconds(10), seconds(30)), Drain::Begin::kAlready);
  EXPECT_EQ(d.deadline(), term + seconds(30));
}

}  // namespace
}  // namespace ct
