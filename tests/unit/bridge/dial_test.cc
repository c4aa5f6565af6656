// The bridge's redial machine on a clock the test passes in, with a jitter
// the test controls: it returns the top or the bottom of the range it is
// given, so the schedule is exact, and records each range asked for.
#include "bridge/dial.h"

#include "shared/wire/limits.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <utility>
#include <vector>

namespace ct::bridge {
namespace {

using namespace std::chrono_literals;
using State = Redialer::State;

struct DialFixture : ::testing::Test {
  bool top = true;  // the jitter returns the top of its range (else the bottom)
  std::vector<std::pair<long long, long long>> ranges;
  Redialer dial{[this](long long lo, long long hi) {
    ranges.emplace_back(lo, hi);
    return top ? hi : lo;
  }};
  const TimePoint t0 = Clock::now();
  TimePoint now = t0;

  // One full round: the dial becomes due, the parent dials, and the result
  // is a failure the TLS process reports. Returns the wait chosen, in ms.
  long long fail_handshake(const std::string& why) {
    now = dial.next_deadline();
    EXPECT_TRUE(dial.due(now, false));
    EXPECT_TRUE(dial.on_dialed());
    dial.on_link_closed(7, false, why, false, now);
    EXPECT_EQ(dial.state(), State::kWaiting);
    return std::chrono::duration_cast<std::chrono::milliseconds>(dial.next_deadline() - now)
        .count();
  }
  long long fail_connect(const std::string& why) {
    now = dial.next_deadline();
    EXPECT_TRUE(dial.due(now, false));
    EXPECT_TRUE(dial.on_dial_failed(why, now));
    return std::chrono::duration_cast<std::chrono::milliseconds>(dial.next_deadline() - now)
        .count();
  }
};

TEST_F(DialFixture, TheFirstDialIsDueAtOnceAfterMaterialLoads) {
  EXPECT_EQ(dial.state(), State::kIdle);
  EXPECT_EQ(dial.next_deadline(), TimePoint::max());
  EXPECT_FALSE(dial.due(t0, false));  // nothing planned before material
  dial.dial_soon(t0);
  EXPECT_EQ(dial.next_deadline(), t0);
  EXPECT_TRUE(dial.due(t0, false));
  EXPECT_EQ(dial.state(), State::kDialing);
}

TEST_F(DialFixture, CheapFailuresWaitTwoHundredFiftyToFiveHundredMillisecondsEveryTime) {
  dial.dial_soon(t0);
  for (int i = 0; i < 8; i++) EXPECT_EQ(fail_connect("connect: Connection refused"), 500);
  top = false;
  EXPECT_EQ(fail_connect("connect: No route to host"), 250);
  EXPECT_EQ(fail_handshake("peer closed the connection during the TLS handshake"), 250);
  EXPECT_EQ(dial.attempt(), 0u);  // cheap failures never grow the backoff
  for (const auto& r : ranges) EXPECT_EQ(r, std::make_pair(250LL, 500LL));
}

TEST_F(DialFixture, TlsAndPinFailuresDoubleFromOneSecondUpToThirtySeconds) {
  dial.dial_soon(t0);
  const long long want[] = {1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000};
  for (long long w : want)
    EXPECT_EQ(fail_handshake("certificate verification failed: pin mismatch"), w);
  EXPECT_EQ(dial.attempt(), 8u);
  // Full jitter: the draw is over [0, cap], floored at the cheap minimum.
  EXPECT_EQ(ranges.front(), std::make_pair(0LL, 1000LL));
  top = false;
  EXPECT_EQ(fail_handshake("TLS handshake failed: alert"), 250);
}

TEST_F(DialFixture, ALinkThatCompletesItsHelloResetsTheBackoff) {
  dial.dial_soon(t0);
  for (int i = 0; i < 4; i++) fail_handshake("TLS handshake failed: alert");
  EXPECT_EQ(dial.attempt(), 4u);
  now = dial.next_deadline();
  ASSERT_TRUE(dial.due(now, false));
  ASSERT_TRUE(dial.on_dialed());
  dial.on_link_up();
  EXPECT_EQ(dial.attempt(), 0u);
  // The link that was up ends: cheap, whatever the reason says.
  now += 1h;
  dial.on_link_closed(8, true, "certificate expired", false, now);
  EXPECT_EQ(dial.next_deadline() - now, 500ms);
  EXPECT_EQ(fail_handshake("TLS handshake failed: alert"), 1000);
}

TEST_F(DialFixture, NoSecondDialWhileOneIsInFlight) {
  dial.dial_soon(t0);
  ASSERT_TRUE(dial.due(t0, false));
  EXPECT_EQ(dial.next_deadline(), TimePoint::max());
  for (int i = 1; i <= 5; i++) EXPECT_FALSE(dial.due(t0 + i * 1s, false));
  dial.dial_soon(t0 + 6s);                                    // a GOAWAY meanwhile
  dial.on_link_closed(3, true, "read: EOF", false, t0 + 6s);  // an older link ends
  EXPECT_EQ(dial.state(), State::kDialing);
  EXPECT_FALSE(dial.due(t0 + 7s, false));
  EXPECT_TRUE(dial.on_dialed());
  EXPECT_EQ(dial.state(), State::kIdle);
  // An answer nobody asked for is a bad internal message.
  EXPECT_FALSE(dial.on_dialed());
  EXPECT_FALSE(dial.on_dial_failed("connect: Connection refused", t0 + 8s));
}

TEST_F(DialFixture, ADialIsNotDueBeforeItsDeadlineAndIsDroppedWhenALinkIsUsable) {
  dial.dial_soon(t0);
  top = false;
  EXPECT_EQ(fail_connect("connect: Connection refused"), 250);
  const TimePoint at = dial.next_deadline();
  EXPECT_FALSE(dial.due(at - 1ms, false));
  EXPECT_EQ(dial.state(), State::kWaiting);
  EXPECT_FALSE(dial.due(at, true));  // a usable link appeared meanwhile
  EXPECT_EQ(dial.state(), State::kIdle);
  EXPECT_EQ(dial.next_deadline(), TimePoint::max());
  // ...and a link ending while another is usable plans nothing.
  dial.on_link_closed(4, true, "read: EOF", true, at);
  EXPECT_EQ(dial.state(), State::kIdle);
}

TEST_F(DialFixture, DrainingPlansNoDialAndLeavesNoDeadline) {
  dial.dial_soon(t0);
  top = false;
  fail_connect("connect: Connection refused");
  dial.drain();
  EXPECT_EQ(dial.next_deadline(), TimePoint::max());
  EXPECT_FALSE(dial.due(t0 + 1h, false));
  dial.dial_soon(t0 + 1h);
  dial.on_link_closed(5, true, "read: EOF", false, t0 + 1h);
  EXPECT_EQ(dial.state(), State::kIdle);
}

// A seeded random walk over every input, checked against a model of what
// the TLS process may see: at most one DIAL_REQUEST unanswered, nothing
// after drain, and every wait inside the bounds of its failure class.
TEST(Redialer, AnySequenceOfInputsKeepsOneDialInFlightAndWaitsInBounds) {
  std::mt19937_64 rng(11);
  Redialer dial([&rng](long long lo, long long hi) {
    return std::uniform_int_distribution<long long>(lo, hi)(rng);
  });
  const char* const reasons[] = {"connect: Connection refused", "TLS handshake failed: alert",
                                 "certificate verification failed", "peer closed the connection",
                                 "read: EOF"};
  TimePoint now = Clock::now();
  bool in_flight = false, drained = false;
  unsigned dials = 0;
  for (int i = 0; i < 20000; i++) {
    const std::string why = reasons[rng() % 5];
    const unsigned before = dial.attempt();
    bool failed = false;
    DialFailure f{"", false};
    switch (rng() % 11) {
      case 0:
        dial.dial_soon(now);
        break;
      case 1:
      case 2: {
        const bool due = dial.due(now, rng() % 4 == 0);
        ASSERT_FALSE(due && (in_flight || drained)) << "step " << i;
        if (due) {
          in_flight = true;
          dials++;
        }
        break;
      }
      case 3:
        ASSERT_EQ(dial.on_dialed(), in_flight) << "step " << i;
        in_flight = false;
        break;
      case 4:
        failed = in_flight && !drained;
        f = classify_dial_failure(why);
        ASSERT_EQ(dial.on_dial_failed(why, now), in_flight) << "step " << i;
        in_flight = false;
        break;
      case 5:
        dial.on_link_up();
        ASSERT_EQ(dial.attempt(), 0u);
        break;
      case 6: {
        const bool was_up = rng() % 2 == 0, usable = rng() % 3 == 0;
        failed = !usable && !in_flight && !drained && dial.state() == Redialer::State::kIdle;
        f = was_up ? DialFailure{"link lost", false} : classify_link_failure(why);
        dial.on_link_closed(9, was_up, why, usable, now);
        break;
      }
      case 7:
        if (i > 18000 && rng() % 50 == 0) {  // late: most of the walk runs undrained
          dial.drain();
          drained = true;
        }
        break;
      case 9: {  // a duplicate, or a new instance, while hunting
        const bool idle = dial.state() == Redialer::State::kIdle && !drained;
        if (rng() % 2 == 0) {
          dial.on_new_instance();
          dial.hunt(now);
        } else {
          dial.on_duplicate(now);
        }
        if (idle) {
          const auto ms =
              std::chrono::duration_cast<std::chrono::milliseconds>(dial.last_delay()).count();
          ASSERT_EQ(dial.state(), Redialer::State::kWaiting) << "step " << i;
          // Never a tight loop: at least 100 ms, and 250 ms past the fast dials.
          ASSERT_GE(ms, dial.hunt_count() < limits::kHuntFastDials ? 100 : 250) << "step " << i;
          ASSERT_LE(ms, 30000) << "step " << i;
        }
        break;
      }
      default:
        now += std::chrono::milliseconds(rng() % 40000);
        break;
    }
    if (failed) {
      const auto ms =
          std::chrono::duration_cast<std::chrono::milliseconds>(dial.last_delay()).count();
      ASSERT_EQ(dial.next_deadline(), now + dial.last_delay()) << "step " << i;
      ASSERT_GE(ms, 250) << "step " << i;
      if (f.expensive) {
        ASSERT_EQ(dial.attempt(), before + 1) << "step " << i;
        ASSERT_LE(ms, std::min(30000LL, 1000LL << std::min(before, 5u))) << "step " << i;
      } else {
        ASSERT_EQ(dial.attempt(), before) << "step " << i;
        ASSERT_LE(ms, 500) << "step " << i;
      }
    }
    ASSERT_EQ(dial.next_deadline() != TimePoint::max(), dial.state() == Redialer::State::kWaiting);
    ASSERT_EQ(dial.state() == Redialer::State::kDialing, in_flight) << "step " << i;
  }
  // The walk reached the interesting states.
  EXPECT_GT(dials, 500u);
  EXPECT_TRUE(drained);
}

TEST_F(DialFixture, HuntingForAMissingReplicaIsFastThenBacksOff) {
  dial.dial_soon(t0);
  ASSERT_TRUE(dial.due(t0, false));
  ASSERT_TRUE(dial.on_dialed());
  // The first link reached an instance; one more is wanted: dial within 100-250 ms.
  dial.on_new_instance();
  dial.hunt(now);
  EXPECT_EQ(dial.state(), State::kWaiting);
  EXPECT_EQ(ranges.back(), std::make_pair(100LL, 250LL));
  EXPECT_EQ(dial.next_deadline(), now + 250ms);
  dial.hunt(now);  // already planned: nothing changes
  EXPECT_EQ(dial.next_deadline(), now + 250ms);
  // Every dial reaches the instance already held.
  std::vector<long long> waits;
  for (unsigned i = 0; i < limits::kHuntFastDials + 6; i++) {
    now = dial.next_deadline();
    ASSERT_TRUE(dial.due(now, false));
    ASSERT_TRUE(dial.on_dialed());
    dial.on_duplicate(now);
    waits.push_back(
        std::chrono::duration_cast<std::chrono::milliseconds>(dial.next_deadline() - now).count());
  }
  for (unsigned i = 0; i + 1 < limits::kHuntFastDials; i++) EXPECT_EQ(waits[i], 250) << i;
  // Then full jitter doubling from 1 s to the 4 s cap, the sync dial's top
  // (the top of each range here), however long the replica stays missing.
  EXPECT_EQ(waits[limits::kHuntFastDials - 1], 1000);
  EXPECT_EQ(waits[limits::kHuntFastDials], 2000);
  EXPECT_EQ(waits[limits::kHuntFastDials + 1], 4000);
  EXPECT_EQ(waits.back(), 4000);
  // The bottom of full jitter is still 250 ms: never a tight loop.
  top = false;
  now = dial.next_deadline();
  ASSERT_TRUE(dial.due(now, false));
  ASSERT_TRUE(dial.on_dialed());
  dial.on_duplicate(now);
  EXPECT_EQ(dial.next_deadline(), now + 250ms);
  // A new instance resets the hunt to its fast dials.
  now = dial.next_deadline();
  ASSERT_TRUE(dial.due(now, false));
  ASSERT_TRUE(dial.on_dialed());
  dial.on_new_instance();
  EXPECT_EQ(dial.hunt_count(), 0u);
  dial.hunt(now);
  EXPECT_EQ(ranges.back(), std::make_pair(100LL, 250LL));
  // Every replica linked: the planned dial is dropped.
  now = dial.next_deadline();
  EXPECT_FALSE(dial.due(now, true));
  EXPECT_EQ(dial.state(), State::kIdle);
}

TEST(DialFailure, ClassesSayWhetherTheBrokerPaidForTheAttempt) {
  EXPECT_STREQ(classify_dial_failure("connect: Connection refused").cls, "refused");
  EXPECT_STREQ(classify_dial_failure("connect: Network is unreachable").cls, "no route");
  EXPECT_STREQ(classify_dial_failure("connect: no answer within 5000 ms").cls, "timeout");
  EXPECT_STREQ(classify_dial_failure("cannot resolve broker.example").cls, "lookup");
  EXPECT_STREQ(classify_dial_failure("something else").cls, "network");
  EXPECT_FALSE(classify_dial_failure("something else").expensive);
  EXPECT_TRUE(classify_link_failure("certificate verification failed").expensive);
  EXPECT_TRUE(classify_link_failure("TLS handshake failed: bad record mac").expensive);
  EXPECT_STREQ(classify_link_failure("TLS handshake failed: bad record mac").cls, "tls");
  EXPECT_FALSE(classify_link_failure("read: Connection reset by peer").expensive);
  EXPECT_FALSE(classify_link_failure("peer closed the connection").expensive);
}

}  // namespace
}  // namespace ct::bridge
