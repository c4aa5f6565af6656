// The broker's bridge pool over in-memory links: each bridge is a link whose
// session is joined back to back with a bridge-side session the test holds,
// the wrappers are a fake the test inspects, and the clock is passed in.
#include "broker/bridge_pool.h"

#include <gtest/gtest.h>

#include <iterator>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <utility>
#include <vector>

#include "shared/wire/origin.h"
#include "tests/unit/stream/memory_link.h"

namespace ct::broker {
namespace {

using namespace std::chrono_literals;
using namespace testing_links;

struct FakeWrappers final : BridgePool<MemoryLink>::Wrappers {
  std::set<uint32_t> open;
  std::map<uint32_t, std::pair<uint64_t, uint32_t>> attached;  // wrapper -> (bridge, stream)
  std::map<uint32_t, Code> resets;
  std::vector<uint32_t> order;  // wrappers in the order they got a stream
  bool waiting(uint32_t w) override { return open.count(w) != 0 && attached.count(w) == 0; }
  void attach(uint32_t w, MemoryLink& b, uint32_t stream) override {
    EXPECT_TRUE(waiting(w)) << "wrapper " << w << " attached twice or after it left";
    attached[w] = {b.id(), stream};
    order.push_back(w);
  }
  void reset(uint32_t w, Code c) override {
    EXPECT_TRUE(waiting(w)) << "wrapper " << w << " reset after it left or got a stream";
    resets[w] = c;
    open.erase(w);
  }
  std::map<uint32_t, std::vector<uint8_t>> origins;  // what the forwarding process said
  Bytes origin(uint32_t w) override {
    auto it = origins.find(w);
    return it == origins.end() ? Bytes() : Bytes(it->second);
  }
};

void handshake(Session& x, Session& y) {
  for (int i = 0; i < 10; i++) {
    move(x, y);
    move(y, x);
  }
}

struct PoolFixture : ::testing::Test {
  Loop loop;
  NullOwner owner;
  std::map<uint64_t, std::unique_ptr<MemoryLink>> links;
  std::map<uint64_t, std::unique_ptr<Session>> peers;  // the bridges' ends
  FakeWrappers wrappers;
  BrokerStats stats;
  BridgePool<MemoryLink> pool{links, wrappers, stats};
  const TimePoint t0 = Clock::now();
  static constexpr auto kTimeout = 500ms;

  // A bridge that completed its HELLO, accepting `max_streams` at once,
  // with `load` streams already open on it.
  MemoryLink& bridge(uint64_t id, uint32_t max_streams = 100, uint32_t load = 0) {
    links[id] = std::make_unique<MemoryLink>(loop, owner, id, cfg(true));
    SessionConfig pc = cfg(false);
    pc.max_streams = max_streams;
    peers[id] = std::make_unique<Session>(pc, t0);
    Session& s = links[id]->session();
    handshake(s, *peers[id]);
    EXPECT_TRUE(s.ready());
    for (uint32_t i = 0; i < load; i++) EXPECT_NE(s.open(), 0u);
    s.take_events();
    return *links[id];
  }

  void arrive(uint32_t w, TimePoint at, bool draining = false) {
    wrappers.open.insert(w);
    pool.place(w, at, kTimeout, draining);
  }
  uint64_t bridge_of(uint32_t w) {
    auto it = wrappers.attached.find(w);
    return it == wrappers.attached.end() ? 0 : it->second.first;
  }
  uint64_t sample(MetricId id, uint32_t label = 0) {
    for (const MetricSample& m : stats.samples({}))
      if (m.id == id && m.label == label) return m.value;
    return 0;
  }
};

// docs/protocol.md §3a: the bridge stream's OPEN carries the origin the
// broker's forwarding process gave the wrapper's stream, byte for byte.
TEST_F(PoolFixture, F45_TheBridgeStreamCarriesTheWrappersOrigin) {
  bridge(1);
  Origin o;
  OriginAddr a;
  a.family = 4;
  a.addr = {127, 0, 0, 2};
  a.port = 41000;
  o.source = a;
  o.stream_id = 0x77;
  o.cluster = "c1";
  wrappers.origins[9] = encode_origin(o);
  arrive(9, t0);
  ASSERT_EQ(bridge_of(9), 1u);
  move(links[1]->session(), *peers[1]);
  bool seen = false;
  for (const Event& ev : peers[1]->take_events()) {
    if (ev.kind != Event::kOpened) continue;
    auto got = decode_origin(ev.data, nullptr);
    ASSERT_TRUE(got.has_value());
    EXPECT_EQ(*got, o);
    seen = true;
  }
  EXPECT_TRUE(seen);
}

TEST_F(PoolFixture, AWrapperGoesToTheLeastLoadedBridge) {
  bridge(1, 100, 2);
  bridge(2, 100, 1);
  bridge(3, 100, 0);
  arrive(10, t0);
  EXPECT_EQ(bridge_of(10), 3u);
  // Now 2, 1, 1: the first of the least loaded.
  arrive(11, t0);
  EXPECT_EQ(bridge_of(11), 2u);
  EXPECT_EQ(links[2]->session().open_streams(), 2u);
  EXPECT_EQ(pool.pending(), 0u);
}

TEST_F(PoolFixture, ABridgeThatSentOrGotGoawayOrIsFullIsNotChosen) {
  MemoryLink& went = bridge(1);  // the bridge is leaving: it sent GOAWAY
  peers[1]->go_away(Code::kShutdown);
  move(*peers[1], went.session());
  went.session().take_events();
  ASSERT_TRUE(went.session().goaway_received());
  bridge(2).session().go_away(Code::kShutdown);  // we are draining it
  bridge(3, 1, 1);                               // at the concurrency it advertised
  EXPECT_FALSE(bridge_usable(*links[1]));
  EXPECT_FALSE(bridge_usable(*links[2]));
  EXPECT_TRUE(bridge_usable(*links[3]));
  EXPECT_FALSE(bridge_has_room(*links[3]));
  EXPECT_EQ(pool.least_loaded(), nullptr);
  // A connected bridge without room: REFUSED, not NO_BRIDGE.
  EXPECT_EQ(pool.no_room_code(), Code::kRefused);
  bridge(4, 100, 5);
  arrive(10, t0);
  EXPECT_EQ(bridge_of(10), 4u);
}

TEST_F(PoolFixture, AHeldWrapperGoesToTheBridgeThatArrives) {
  EXPECT_EQ(pool.no_room_code(), Code::kNoBridge);
  arrive(10, t0);
  EXPECT_EQ(bridge_of(10), 0u);
  EXPECT_EQ(pool.pending(), 1u);
  EXPECT_EQ(pool.next_deadline(), t0 + kTimeout);
  pool.serve();  // still no bridge: nothing changes
  EXPECT_EQ(pool.pending(), 1u);
  bridge(1);
  pool.serve();
  EXPECT_EQ(bridge_of(10), 1u);
  EXPECT_EQ(pool.pending(), 0u);
  EXPECT_EQ(pool.next_deadline(), TimePoint::max());
  pool.expire(t0 + 1h);
  EXPECT_TRUE(wrappers.resets.empty());
}

TEST_F(PoolFixture, AHeldWrapperIsResetAtItsOwnDeadline) {
  arrive(10, t0);
  arrive(11, t0 + 100ms);
  pool.expire(t0 + kTimeout - 1ms);
  EXPECT_TRUE(wrappers.resets.empty());
  pool.expire(t0 + kTimeout);
  EXPECT_EQ(wrappers.resets.at(10), Code::kNoBridge);
  EXPECT_EQ(wrappers.resets.count(11), 0u);
  EXPECT_EQ(pool.next_deadline(), t0 + 100ms + kTimeout);
  bridge(1, 1, 1);  // connected, but full: the wrapper hears REFUSED
  pool.serve();
  pool.expire(t0 + 100ms + kTimeout);
  EXPECT_EQ(wrappers.resets.at(11), Code::kRefused);
  EXPECT_EQ(pool.pending(), 0u);
  EXPECT_EQ(sample(MetricId::kPendingTimeouts), 2u);
  EXPECT_EQ(sample(MetricId::kResets, static_cast<uint32_t>(Code::kNoBridge)), 1u);
  EXPECT_EQ(sample(MetricId::kResets, static_cast<uint32_t>(Code::kRefused)), 1u);
}

TEST_F(PoolFixture, F36_AtMostMaxPendingOpensAreHeldAndTheNextIsResetAtOnce) {
  const uint32_t cap = static_cast<uint32_t>(limits::kMaxPendingOpens);
  for (uint32_t w = 1; w <= cap; w++) arrive(w, t0);
  EXPECT_EQ(pool.pending(), limits::kMaxPendingOpens);
  EXPECT_TRUE(wrappers.resets.empty());
  // One more, with no bridge: reset NO_BRIDGE at once, not held, and the
  // ones already waiting keep their place and their deadline.
  arrive(cap + 1, t0 + 1ms);
  EXPECT_EQ(wrappers.resets.size(), 1u);
  EXPECT_EQ(wrappers.resets.at(cap + 1), Code::kNoBridge);
  EXPECT_EQ(pool.pending(), limits::kMaxPendingOpens);
  EXPECT_EQ(pool.next_deadline(), t0 + kTimeout);
  // A bridge arrives: the held ones are served, in order, and a slot is free again.
  bridge(1, cap + 1);
  pool.serve();
  EXPECT_EQ(pool.pending(), 0u);
  ASSERT_EQ(wrappers.order.size(), limits::kMaxPendingOpens);
  EXPECT_EQ(wrappers.order.front(), 1u);
  EXPECT_EQ(wrappers.order.back(), cap);
  EXPECT_EQ(sample(MetricId::kResets, static_cast<uint32_t>(Code::kNoBridge)), 1u);
}

TEST_F(PoolFixture, HeldWrappersAreServedInArrivalOrderAndNeverOvertaken) {
  arrive(10, t0);
  arrive(11, t0);
  arrive(12, t0);
  wrappers.open.erase(11);  // its wrapper went away while held
  bridge(1, 1);
  pool.serve();
  EXPECT_EQ(bridge_of(10), 1u);
  EXPECT_EQ(pool.pending(), 1u);  // 11 dropped, 12 waits: the bridge is full
  bridge(2, 1);
  arrive(13, t0 + 1ms);  // room now, but 12 came first
  EXPECT_EQ(bridge_of(13), 0u);
  pool.serve();
  EXPECT_EQ(bridge_of(12), 2u);
  EXPECT_EQ(bridge_of(13), 0u);
  EXPECT_EQ(pool.pending(), 1u);
  // A gone wrapper's deadline passes without a reset or a count.
  wrappers.open.erase(13);
  pool.expire(t0 + 1h);
  EXPECT_TRUE(wrappers.resets.empty());
  EXPECT_EQ(sample(MetricId::kPendingTimeouts), 0u);
}

TEST_F(PoolFixture, ADrainingBrokerRefusesWhatItCannotServeAtOnce) {
  arrive(10, t0, true);
  EXPECT_EQ(wrappers.resets.at(10), Code::kNoBridge);
  EXPECT_EQ(pool.pending(), 0u);
  bridge(1);
  arrive(11, t0, true);  // a bridge with room still serves it
  EXPECT_EQ(bridge_of(11), 1u);
  pool.clear();
  EXPECT_EQ(pool.pending(), 0u);
}

// A seeded random walk: wrappers arrive and leave, bridges connect, fill,
// send GOAWAY and go, the clock moves. Whatever the order, wrappers get
// bridge streams in arrival order (a held wrapper is never overtaken), only
// on a bridge with room, and none still waits past its deadline once the
// TLS process has called expire().
TEST_F(PoolFixture, AnySequenceServesInArrivalOrderOnlyWithRoomAndWithinTheDeadline) {
  std::mt19937_64 rng(5);
  std::map<uint32_t, TimePoint> arrived;
  uint32_t next_wrapper = 1;
  TimePoint now = t0;
  for (int i = 0; i < 5000; i++) {
    switch (rng() % 8) {
      case 0:
      case 1:
        arrived[next_wrapper] = now;
        arrive(next_wrapper++, now);
        break;
      case 2:
        if (links.size() < 4) {
          const uint64_t id = 100 + rng() % 1000;
          if (links.count(id) == 0) bridge(id, static_cast<uint32_t>(1 + rng() % 3));
        }
        break;
      case 3:
        if (!links.empty()) {  // a bridge goes: one of ours is told to leave, or is gone
          auto it = std::next(links.begin(), static_cast<long>(rng() % links.size()));
          if (rng() % 2 == 0) {
            it->second->session().go_away(Code::kShutdown);
          } else {
            peers.erase(it->first);
            links.erase(it);
          }
        }
        break;
      case 4:
        if (!wrappers.open.empty())  // a wrapper hangs up
          wrappers.open.erase(
              std::next(wrappers.open.begin(), static_cast<long>(rng() % wrappers.open.size())));
        break;
      case 5:
        pool.serve();
        break;
      default:
        now += std::chrono::milliseconds(rng() % 200);
        pool.expire(now);
        for (auto& [w, at] : arrived)
          if (wrappers.waiting(w)) {
            ASSERT_GT(at + kTimeout, now) << "wrapper " << w;
          }
        break;
    }
    for (auto& [id, l] : links)
      ASSERT_LE(l->session().open_streams(), l->session().peer_hello().max_streams);
  }
  const std::vector<uint32_t>& order = wrappers.order;
  ASSERT_GT(order.size(), 50u);
  for (size_t k = 1; k < order.size(); k++) ASSERT_LT(order[k - 1], order[k]);
  for (auto& [w, code] : wrappers.resets) EXPECT_EQ(wrappers.attached.count(w), 0u);
  EXPECT_GT(wrappers.resets.size(), 10u);
}

// The bridge says its OpenBao's state (STATUS), as vault-bridge does after
// every health probe that changed it.
void report(PoolFixture& f, uint64_t id, UpstreamState st) {
  f.peers[id]->set_status(LinkStatus{0, st});
  move(*f.peers[id], f.links[id]->session());
  f.links[id]->session().take_events();
  ASSERT_EQ(bridge_upstream(*f.links[id]), st);
}

TEST_F(PoolFixture, NewStreamsGoToActiveThenStandbyThenUnknownOpenBaos) {
  bridge(1);  // never reported a state: unknown
  bridge(2);
  bridge(3);
  report(*this, 2, UpstreamState::kStandby);
  report(*this, 3, UpstreamState::kActive);
  for (uint32_t w = 10; w < 15; w++) arrive(w, t0);
  for (uint32_t w = 10; w < 15; w++) EXPECT_EQ(bridge_of(w), 3u) << w;  // load does not matter
  // The active node sealed: the standby (which forwards to the next active).
  report(*this, 3, UpstreamState::kSealed);
  arrive(20, t0);
  EXPECT_EQ(bridge_of(20), 2u);
  report(*this, 2, UpstreamState::kPerfStandby);
  arrive(21, t0);
  EXPECT_EQ(bridge_of(21), 2u);
  // Standbys gone too: the one that never said (a version 1 or unpolled bridge).
  report(*this, 2, UpstreamState::kUnreachable);
  arrive(22, t0);
  EXPECT_EQ(bridge_of(22), 1u);
  EXPECT_EQ(upstream_rank(UpstreamState::kActive), 0);
  EXPECT_EQ(upstream_rank(UpstreamState::kStandby), upstream_rank(UpstreamState::kPerfStandby));
  EXPECT_LT(upstream_rank(UpstreamState::kPerfStandby), upstream_rank(UpstreamState::kUnknown));
}

TEST_F(PoolFixture, AmongEquallyRankedOpenBaosTheLeastLoadedBridgeWins) {
  bridge(1, 100, 3);
  bridge(2, 100, 1);
  bridge(3, 100, 0);
  report(*this, 1, UpstreamState::kStandby);
  report(*this, 2, UpstreamState::kPerfStandby);
  report(*this, 3, UpstreamState::kSealed);
  arrive(10, t0);
  EXPECT_EQ(bridge_of(10), 2u);
  // A full active node: the standby takes the stream rather than it waiting.
  bridge(4, 1, 1);
  report(*this, 4, UpstreamState::kActive);
  arrive(11, t0);
  EXPECT_EQ(bridge_of(11), 2u);
}

TEST_F(PoolFixture, SealedUninitialisedOrUnreachableOpenBaosGetNoStreamAndWrappersWait) {
  bridge(1);
  bridge(2);
  bridge(3);
  report(*this, 1, UpstreamState::kSealed);
  report(*this, 2, UpstreamState::kUninitialized);
  report(*this, 3, UpstreamState::kUnreachable);
  for (uint64_t id : {uint64_t{1}, uint64_t{2}, uint64_t{3}}) {
    EXPECT_TRUE(bridge_usable(*links[id]));  // linked, counted for readiness
    EXPECT_FALSE(bridge_serves(*links[id]));
    EXPECT_FALSE(bridge_has_room(*links[id]));
  }
  EXPECT_EQ(pool.least_loaded(), nullptr);
  EXPECT_EQ(pool.no_room_code(), Code::kNoBridge);
  arrive(10, t0);
  arrive(11, t0 + 100ms);
  EXPECT_EQ(pool.pending(), 2u);
  EXPECT_TRUE(wrappers.attached.empty());
  // Node 2 unsealed as a standby: the held wrappers go there, in order.
  report(*this, 2, UpstreamState::kStandby);
  pool.serve();
  EXPECT_EQ(bridge_of(10), 2u);
  EXPECT_EQ(bridge_of(11), 2u);
  EXPECT_EQ(wrappers.order, (std::vector<uint32_t>{10, 11}));
  EXPECT_EQ(pool.pending(), 0u);
  // Sealed again: the next wrapper waits and, at its deadline, is reset
  // NO_BRIDGE (no bridge can serve it), not REFUSED.
  report(*this, 2, UpstreamState::kSealed);
  arrive(12, t0 + 1s);
  pool.expire(t0 + 1s + kTimeout);
  EXPECT_EQ(wrappers.resets[12], Code::kNoBridge);
}

TEST(BrokerStats, BridgesByUpstreamHasOneSeriesPerStateZerosIncluded) {
  BrokerStats s;
  BrokerStats::Live live;
  live.by_upstream[static_cast<size_t>(UpstreamState::kSealed)] = 2;
  live.by_upstream[static_cast<size_t>(UpstreamState::kActive)] = 1;
  auto m = decode_metrics(*s.changed_body(live));
  ASSERT_TRUE(m.has_value());
  const std::string text = render_metrics(*m, {}, "test");
  EXPECT_NE(text.find("# TYPE cloudtaser_broker_bridges_by_upstream gauge\n"), std::string::npos)
      << text;
  for (const auto& [state, n] : std::vector<std::pair<std::string, int>>{{"unknown", 0},
                                                                         {"active", 1},
                                                                         {"standby", 0},
                                                                         {"perf_standby", 0},
                                                                         {"sealed", 2},
                                                                         {"uninitialized", 0},
                                                                         {"unreachable", 0}})
    EXPECT_NE(text.find("\ncloudtaser_broker_bridges_by_upstream{state=\"" + state + "\"} " +
                        std::to_string(n) + "\n"),
              std::string::npos)
        << state << "\n"
        << text;
}

TEST(BrokerStats, CountersAddTheLiveFiguresAndOnlyChangesAreSent) {
  BrokerStats s;
  s.stream_opened();
  s.stream_opened();
  s.handshake_failed(HandshakeFailure::kPin);
  s.link_error(Code::kProtocol);
  SessionStats closed;
  closed.bytes_out = 100;
  closed.bytes_in = 40;
  s.link_closed(closed);
  BrokerStats::Live live;
  live.bridges_up = 1;
  live.bytes_to_bridge = 5;
  live.bytes_from_bridge = 7;
  live.admission[static_cast<size_t>(Refusal::kPerSource)] = 3;
  auto body = s.changed_body(live);
  ASSERT_TRUE(body.has_value());
  EXPECT_FALSE(s.changed_body(live).has_value());  // nothing changed: nothing to send
  auto m = decode_metrics(*body);
  ASSERT_TRUE(m.has_value());
  std::map<std::pair<MetricId, uint32_t>, uint64_t> got;
  for (const MetricSample& x : *m) got[{x.id, x.label}] = x.value;
  EXPECT_EQ((got[{MetricId::kBridgesConnected, 0}]), 1u);
  EXPECT_EQ((got[{MetricId::kStreamsTotal, 0}]), 2u);
  EXPECT_EQ((got[{MetricId::kBytesToBridge, 0}]), 105u);
  EXPECT_EQ((got[{MetricId::kBytesFromBridge, 0}]), 47u);
  EXPECT_EQ((got[{MetricId::kHandshakeFailures, static_cast<uint32_t>(HandshakeFailure::kPin)}]),
            1u);
  EXPECT_EQ((got[{MetricId::kLinkErrors, static_cast<uint32_t>(Code::kProtocol)}]), 1u);
  EXPECT_EQ((got[{MetricId::kAdmission, static_cast<uint32_t>(Refusal::kPerSource)}]), 3u);
  // Refusal kinds that never happened are not sent.
  EXPECT_EQ(got.count({MetricId::kAdmission, static_cast<uint32_t>(Refusal::kEvicted)}), 0u);
  s.reset(Code::kCancel);
  EXPECT_TRUE(s.changed_body(live).has_value());
}

}  // namespace
}  // namespace ct::broker
