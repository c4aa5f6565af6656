// The beacon's pairing table (docs/beacon.md §2, §3) on a fake clock: a
// broker and a bridge of one id pair, oldest first; two of a kind never do;
// a bridge is never paired with an instance it holds; caps refuse with a
// reason; bridges time out and waiting brokers get keepalives.
#include "beacon/pairing.h"

#include <gtest/gtest.h>

namespace ct::beacon {
namespace {

using namespace std::chrono_literals;
using Outcome = PairingTable::Outcome;

rdv::RendezvousId id_of(uint8_t b) {
  rdv::RendezvousId id{};
  id.fill(b);
  return id;
}
rdv::InstanceId inst(uint8_t b) {
  rdv::InstanceId i{};
  i.fill(b);
  return i;
}
rdv::Preamble broker(uint8_t id, uint8_t instance) {
  return {rdv::Role::kBroker, id_of(id), {inst(instance)}};
}
rdv::Preamble bridge(uint8_t id, std::vector<rdv::InstanceId> held = {}) {
  return {rdv::Role::kBridge, id_of(id), std::move(held)};
}

const TimePoint t0 = TimePoint() + 1h;

TEST(PairingTable, ABrokerAndABridgeOfOneIdPairOldestFirst) {
  PairingTable t;
  EXPECT_EQ(t.add(1, broker(7, 1), t0).outcome, Outcome::kWaiting);
  EXPECT_EQ(t.add(2, broker(7, 2), t0 + 1s).outcome, Outcome::kWaiting);
  auto a = t.add(3, bridge(7), t0 + 2s);
  EXPECT_EQ(a.outcome, Outcome::kPaired);
  EXPECT_EQ(a.peer, 1u);
  EXPECT_EQ(t.waiting(), 1u);
  // A bridge that waits is taken by the next broker.
  PairingTable u;
  EXPECT_EQ(u.add(10, bridge(7), t0).outcome, Outcome::kWaiting);
  auto b = u.add(11, broker(7, 1), t0);
  EXPECT_EQ(b.outcome, Outcome::kPaired);
  EXPECT_EQ(b.peer, 10u);
  EXPECT_EQ(u.waiting(), 0u);
}

TEST(PairingTable, TwoOfAKindOrTwoIdsNeverPair) {
  PairingTable t;
  EXPECT_EQ(t.add(1, bridge(7), t0).outcome, Outcome::kWaiting);
  EXPECT_EQ(t.add(2, bridge(7), t0).outcome, Outcome::kWaiting);
  EXPECT_EQ(t.add(3, broker(8, 1), t0).outcome, Outcome::kWaiting);
  EXPECT_EQ(t.add(4, broker(8, 2), t0).outcome, Outcome::kWaiting);
  EXPECT_EQ(t.waiting(), 4u);
  EXPECT_EQ(t.waiting_brokers(), 2u);
  EXPECT_EQ(t.waiting_bridges(), 2u);
}

TEST(PairingTable, ABridgeIsNotPairedWithAnInstanceItHolds) {
  PairingTable t;
  t.add(1, broker(7, 1), t0);
  t.add(2, broker(7, 2), t0);
  auto a = t.add(3, bridge(7, {inst(1)}), t0);
  EXPECT_EQ(a.outcome, Outcome::kPaired);
  EXPECT_EQ(a.peer, 2u);
  // Holding both: it waits, and a third instance takes it.
  EXPECT_EQ(t.add(4, bridge(7, {inst(1), inst(2)}), t0).outcome, Outcome::kWaiting);
  auto b = t.add(5, broker(7, 3), t0);
  EXPECT_EQ(b.outcome, Outcome::kPaired);
  EXPECT_EQ(b.peer, 4u);
  // Broker 1 still waits: no bridge wanted it.
  EXPECT_EQ(t.all_waiting(), std::vector<ConnId>{1});
}

TEST(PairingTable, CapsRefuseWithAReason) {
  PairingLimits lim;
  lim.brokers_per_id = 2;
  lim.bridges_per_id = 1;
  lim.waiting_total = 4;
  PairingTable t(lim);
  t.add(1, broker(7, 1), t0);
  t.add(2, broker(7, 2), t0);
  auto a = t.add(3, broker(7, 3), t0);
  EXPECT_EQ(a.outcome, Outcome::kRefused);
  EXPECT_EQ(a.refusal, rdv::Answer::kOverCapacity);
  EXPECT_NE(a.reason.find("broker connections for this id (2)"), std::string::npos) << a.reason;
  t.add(4, bridge(8), t0);
  auto b = t.add(5, bridge(8), t0);
  EXPECT_EQ(b.outcome, Outcome::kRefused);
  EXPECT_NE(b.reason.find("bridge connections for this id (1)"), std::string::npos) << b.reason;
  t.add(6, broker(9, 1), t0);
  auto c = t.add(7, broker(10, 1), t0);
  EXPECT_EQ(c.outcome, Outcome::kRefused);
  EXPECT_NE(c.reason.find("at this beacon (4)"), std::string::npos) << c.reason;
  // A refused connection holds no place: one leaves, one more fits.
  t.remove(6);
  EXPECT_EQ(t.add(8, broker(10, 1), t0).outcome, Outcome::kWaiting);
  // A bridge that can pair is paired even at the cap (it frees a place).
  EXPECT_EQ(t.add(9, bridge(7), t0).outcome, Outcome::kPaired);
}

TEST(PairingTable, BridgesTimeOutAndBrokersGetKeepalives) {
  PairingTable t;
  t.add(1, bridge(7), t0);
  t.add(2, broker(8, 1), t0 + 1s);
  EXPECT_EQ(t.next_deadline(), t0 + 10s);
  auto d = t.tick(t0 + 9s);
  EXPECT_TRUE(d.timed_out.empty());
  d = t.tick(t0 + 10s);
  EXPECT_EQ(d.timed_out, std::vector<ConnId>{1});
  EXPECT_EQ(t.waiting(), 1u);
  EXPECT_EQ(t.next_deadline(), t0 + 26s);
  d = t.tick(t0 + 26s);
  EXPECT_EQ(d.keepalive, std::vector<ConnId>{2});
  EXPECT_EQ(t.next_deadline(), t0 + 51s);
  // A timed-out bridge is gone: a broker arriving now does not pair with it.
  EXPECT_EQ(t.add(3, broker(7, 1), t0 + 27s).outcome, Outcome::kWaiting);
}

TEST(PairingTable, RemovingIsIdempotentAndLeavesNothingBehind) {
  PairingTable t;
  t.add(1, broker(7, 1), t0);
  t.remove(1);
  t.remove(1);
  t.remove(99);
  EXPECT_EQ(t.waiting(), 0u);
  EXPECT_EQ(t.next_deadline(), TimePoint::max());
  EXPECT_EQ(t.add(2, bridge(7), t0).outcome, Outcome::kWaiting);
}

}  // namespace
}  // namespace ct::beacon

namespace ct::beacon {
namespace {

TEST(PairingTable, OneSourceMayHoldOnlySoManyWaitingConnections) {
  PairingLimits lim;
  lim.waiting_per_source = 3;
  PairingTable t(lim);
  const TimePoint now = TimePoint() + std::chrono::hours(1);
  // Three different ids from one address wait; a fourth is refused, whatever its id.
  for (uint8_t i = 0; i < 3; i++)
    EXPECT_EQ(t.add(i, broker(i, 1), now, "192.0.2.1").outcome, PairingTable::Outcome::kWaiting);
  auto a = t.add(9, broker(9, 1), now, "192.0.2.1");
  EXPECT_EQ(a.outcome, PairingTable::Outcome::kRefused);
  EXPECT_NE(a.reason.find("from this source (3)"), std::string::npos) << a.reason;
  // Another source is not affected.
  EXPECT_EQ(t.add(10, broker(9, 1), now, "192.0.2.2").outcome, PairingTable::Outcome::kWaiting);
  // A pairing, a removal and a timeout each give the source a place back.
  EXPECT_EQ(t.add(11, bridge(0), now, "198.51.100.7").outcome, PairingTable::Outcome::kPaired);
  EXPECT_EQ(t.add(12, broker(12, 1), now, "192.0.2.1").outcome, PairingTable::Outcome::kWaiting);
  t.remove(1);
  EXPECT_EQ(t.add(13, bridge(13), now, "192.0.2.1").outcome, PairingTable::Outcome::kWaiting);
  EXPECT_EQ(t.add(14, broker(14, 1), now, "192.0.2.1").outcome, PairingTable::Outcome::kRefused);
  t.tick(now + lim.pairing_timeout);  // the waiting bridge 13 times out
  EXPECT_EQ(t.add(15, broker(15, 1), now, "192.0.2.1").outcome, PairingTable::Outcome::kWaiting);
}

}  // namespace
}  // namespace ct::beacon
