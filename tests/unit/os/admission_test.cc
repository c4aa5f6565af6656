// The admission layer's rules, with a fake clock: handshake pool with eviction
// of the oldest (never before min_age), per-source caps, absolute deadlines,
// reserved slots for established links, and when the listener pauses.
#include "shared/os/admission.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <cstring>

namespace ct {
namespace {

using std::chrono::milliseconds;

const TimePoint t0 = TimePoint{} + std::chrono::hours(1);

SourceKey v4(const char* a) {
  sockaddr_storage ss{};
  sockaddr_in in{};
  in.sin_family = AF_INET;
  inet_pton(AF_INET, a, &in.sin_addr);
  std::memcpy(&ss, &in, sizeof in);
  return *source_key(ss);
}

SourceKey v6(const char* a) {
  sockaddr_storage ss{};
  sockaddr_in6 in{};
  in.sin6_family = AF_INET6;
  inet_pton(AF_INET6, a, &in.sin6_addr);
  std::memcpy(&ss, &in, sizeof in);
  return *source_key(ss);
}

AdmissionLimits bridge_like() {
  AdmissionLimits l;
  l.handshakes = 4;
  l.handshakes_per_source = 2;
  l.handshake_deadline = milliseconds(3000);
  l.min_age = milliseconds(1000);
  l.established = 2;
  return l;
}

TEST(SourceKey, V4MappedIsTheV4AddressAndV6IsKeyedByItsSlash64) {
  EXPECT_EQ(v6("::ffff:10.1.2.3"), v4("10.1.2.3"));
  EXPECT_EQ(v6("2001:db8:1:2::1"), v6("2001:db8:1:2:ffff::9"));
  EXPECT_NE(v6("2001:db8:1:2::1"), v6("2001:db8:1:3::1"));
  EXPECT_EQ(v4("10.1.2.3").str(), "10.1.2.3");
  EXPECT_EQ(v6("2001:db8:1:2::7").str(), "2001:db8:1:2::/64");
  sockaddr_storage un{};
  un.ss_family = AF_UNIX;
  EXPECT_FALSE(source_key(un).has_value());
}

TEST(Admission, ASourceOverItsHandshakeCapIsRefusedWhileOthersAreAdmitted) {
  Admission a(bridge_like());
  EXPECT_TRUE(a.on_accept(1, v4("10.0.0.1"), t0).admit);
  EXPECT_TRUE(a.on_accept(2, v4("10.0.0.1"), t0).admit);
  auto d = a.on_accept(3, v4("10.0.0.1"), t0);
  EXPECT_FALSE(d.admit);
  EXPECT_EQ(d.why, Refusal::kPerSource);
  EXPECT_EQ(d.evict, 0u);
  EXPECT_TRUE(a.on_accept(4, v4("10.0.0.2"), t0).admit);
  EXPECT_EQ(a.refused(Refusal::kPerSource), 1u);
  // A closed handshake gives its source the slot back.
  a.on_closed(1);
  EXPECT_TRUE(a.on_accept(5, v4("10.0.0.1"), t0).admit);
}

TEST(Admission, AFullHandshakePoolEvictsTheOldestOnceItHadMinAge) {
  Admission a(bridge_like());
  for (Admission::Id id = 1; id <= 4; id++)
    ASSERT_TRUE(
        a.on_accept(id, v4(id <= 2 ? "10.0.0.1" : "10.0.0.2"), t0 + milliseconds(id)).admit);
  // Full, and the oldest is younger than min_age: the listener pauses instead
  // of accepting and closing.
  EXPECT_FALSE(a.accepting(t0 + milliseconds(500)));
  EXPECT_EQ(a.next_deadline(), t0 + milliseconds(1001));
  EXPECT_TRUE(a.accepting(t0 + milliseconds(1001)));
  auto d = a.on_accept(5, v4("10.0.0.9"), t0 + milliseconds(1001));
  EXPECT_TRUE(d.admit);
  EXPECT_EQ(d.evict, 1u);  // the oldest, not the newcomer
  EXPECT_EQ(a.handshakes(), 4u);
  EXPECT_EQ(a.refused(Refusal::kEvicted), 1u);
  // The evicted one's source slot is free again.
  EXPECT_TRUE(a.on_accept(6, v4("10.0.0.1"), t0 + milliseconds(1002)).admit);
  // A newcomer that arrives while the oldest is too young is refused, never
  // admitted beyond the pool.
  Admission b(bridge_like());
  for (Admission::Id id = 1; id <= 4; id++)
    ASSERT_TRUE(b.on_accept(id, v4(id <= 2 ? "10.0.0.1" : "10.0.0.2"), t0).admit);
  auto young = b.on_accept(5, v4("10.0.0.8"), t0 + milliseconds(999));
  EXPECT_FALSE(young.admit);
  EXPECT_EQ(young.why, Refusal::kPaused);
  EXPECT_EQ(b.handshakes(), 4u);
}

TEST(Admission, HandshakeDeadlineIsAbsoluteFromAccept) {
  Admission a(bridge_like());
  a.on_accept(1, v4("10.0.0.1"), t0);
  a.on_accept(2, v4("10.0.0.2"), t0 + milliseconds(100));
  EXPECT_EQ(a.next_deadline(), t0 + milliseconds(3000));
  EXPECT_TRUE(a.expired(t0 + milliseconds(2999)).empty());
  EXPECT_EQ(a.expired(t0 + milliseconds(3000)), std::vector<Admission::Id>{1});
  EXPECT_EQ(a.expired(t0 + milliseconds(3100)), std::vector<Admission::Id>{2});
  EXPECT_EQ(a.handshakes(), 0u);
  EXPECT_EQ(a.refused(Refusal::kDeadline), 2u);
  EXPECT_EQ(a.next_deadline(), TimePoint::max());
}

TEST(Admission, EstablishedLinksHoldReservedSlotsHandshakesCannotTake) {
  Admission a(bridge_like());
  ASSERT_TRUE(a.on_accept(1, v4("10.0.0.1"), t0).admit);
  ASSERT_TRUE(a.on_accept(2, v4("10.0.0.2"), t0).admit);
  EXPECT_TRUE(a.on_established(1));
  EXPECT_TRUE(a.on_established(2));
  EXPECT_EQ(a.handshakes(), 0u);
  // A full handshake pool of strangers, cycled by eviction, never touches them.
  Admission::Id id = 3;
  for (int round = 0; round < 10; round++)
    for (int i = 0; i < 4; i++, id++) {
      auto d = a.on_accept(id, v4(i % 2 ? "10.9.0.1" : "10.9.0.2"),
                           t0 + milliseconds(1000 * (round + 1)));
      if (d.admit && d.evict != 0) {
        EXPECT_GT(d.evict, 2u);
      }
    }
  EXPECT_EQ(a.established(), 2u);
  // A third link finishing its handshake finds no reserved slot.
  a.on_closed(id - 1);
  ASSERT_TRUE(a.on_accept(id, v4("10.0.0.3"), t0 + milliseconds(20000)).admit);
  EXPECT_FALSE(a.on_established(id));
  EXPECT_EQ(a.refused(Refusal::kNoReservedSlot), 1u);
  // When one closes, the next may take its slot.
  a.on_closed(1);
  ASSERT_TRUE(a.on_accept(id + 1, v4("10.0.0.3"), t0 + milliseconds(20000)).admit);
  EXPECT_TRUE(a.on_established(id + 1));
}

TEST(Admission, APortWithoutHandshakesCapsEachSourceAndPausesWhenFull) {
  AdmissionLimits l;
  l.established = 3;
  l.established_per_source = 2;
  Admission a(l);
  EXPECT_TRUE(a.on_accept(1, v4("10.0.0.1"), t0).admit);
  EXPECT_TRUE(a.on_accept(2, v4("10.0.0.1"), t0).admit);
  auto d = a.on_accept(3, v4("10.0.0.1"), t0);
  EXPECT_FALSE(d.admit);
  EXPECT_EQ(d.why, Refusal::kPerSource);
  EXPECT_TRUE(a.accepting(t0));
  EXPECT_TRUE(a.on_accept(4, v4("10.0.0.2"), t0).admit);
  EXPECT_FALSE(a.accepting(t0));  // full: the listener leaves epoll
  EXPECT_EQ(a.next_deadline(), TimePoint::max());
  a.on_closed(2);
  EXPECT_TRUE(a.accepting(t0));
  EXPECT_TRUE(a.on_accept(5, v4("10.0.0.1"), t0).admit);
}

TEST(Admission, ClosingUnknownOrTwiceIsHarmless) {
  Admission a(bridge_like());
  a.on_closed(42);
  ASSERT_TRUE(a.on_accept(1, v4("10.0.0.1"), t0).admit);
  a.on_closed(1);
  a.on_closed(1);
  EXPECT_EQ(a.handshakes(), 0u);
  EXPECT_FALSE(a.on_established(1));
}

TEST(ListenerOptions, RoundTripsAndEmptyMeansDefaults) {
  ListenerOptions o{77, 1};
  auto b = encode_listener_options(o);
  ASSERT_EQ(b.size(), kListenerOptionsSize);
  auto d = decode_listener_options(b);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->max_per_source, 77u);
  EXPECT_EQ(d->probes_only, 1);
  auto e = decode_listener_options({});
  ASSERT_TRUE(e);
  EXPECT_EQ(e->max_per_source, 0u);
  b.push_back(0);
  EXPECT_FALSE(decode_listener_options(b));
  b.pop_back();
  b.back() = 2;
  EXPECT_FALSE(decode_listener_options(b));
}

}  // namespace
}  // namespace ct
