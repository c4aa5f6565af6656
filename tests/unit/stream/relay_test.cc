// RelayTable's deadlines and codec failures: a relay between two links whose
// sessions are joined back to back with peer sessions in memory, a codec
// whose state the test sets, and a clock the test passes in.
#include "shared/stream/relay.h"

#include <gtest/gtest.h>

#include <vector>

#include "shared/wire/limits.h"
#include "tests/unit/stream/memory_link.h"

namespace ct {
namespace {

using namespace std::chrono_literals;
using namespace testing_links;

class FakeCodec final : public StreamCodec {
 public:
  bool is_established = false;
  bool has_failed = false;
  std::string why = "bad ClientHello";
  void put_outer(Bytes in) override { fed += in.size(); }
  uint64_t outer_consumed() const override { return fed; }
  size_t take_inner(std::span<uint8_t>) override { return 0; }
  bool put_inner(Bytes in) override {
    if (!is_established) return false;
    inner.append(in.begin(), in.end());
    if (sink != nullptr) sink->append(in.begin(), in.end());
    return true;
  }
  Bytes outer_pending() const override { return {}; }
  void outer_sent(size_t) override {}
  void close_inner() override { inner_closed = true; }
  bool inner_eof() const override { return false; }
  bool outer_drained() const override { return true; }
  bool established() const override { return is_established; }
  bool failed() const override { return has_failed; }
  const std::string& error() const override { return why; }
  uint64_t fed = 0;
  std::string inner;  // what the relay wrote towards the wrapper
  // The same, kept by the fixture: a reset relay destroys its codec.
  std::string* sink = nullptr;
  bool inner_closed = false;
};

// The reset code `peer` got for `id`, or nullopt.
std::optional<Code> reset_code(Session& from, Session& peer, uint32_t id) {
  move(from, peer);
  for (const Event& ev : peer.take_events())
    if (ev.kind == Event::kReset && ev.stream == id) return ev.code;
  return std::nullopt;
}

struct RelayFixture : ::testing::Test {
  Loop loop;
  NullOwner owner;
  // `a`: the broker's link (it opened the stream); `b`: the data channel.
  MemoryLink a{loop, owner, 1, cfg(false)};
  Session peer_a{cfg(true), Clock::now()};
  MemoryLink b{loop, owner, 2, cfg(true)};
  Session peer_b{cfg(false), Clock::now()};
  RelayTable table;
  uint32_t ida = 0, idb = 0;
  FakeCodec* codec = nullptr;  // owned by its relay: not to be used once the relay is gone
  std::string written;         // what the relay wrote towards the wrapper, relay or not
  const TimePoint t0 = Clock::now();

  // `peer` sends bytes on the stream; `l`'s session delivers them to the table.
  void deliver(Session& peer, MemoryLink& l, uint32_t peer_id, std::vector<uint8_t> bytes) {
    peer.send(peer_id, bytes, false);
    move(peer, l.session());
    for (const Event& ev : l.session().take_events())
      if (ev.kind == Event::kData) table.dispatch(l, ev);
  }

  // Rounds of: both peers send what their stream allows, each link's
  // session events go to the table, the peers take what arrived. `ea` is the
  // wrapper's side (peer_a), `eb` the forwarding process's (peer_b).
  TestEnd ea, eb;
  void settle(int rounds = 100) {
    for (int i = 0; i < rounds; i++) {
      ea.send_some(peer_a, ida);
      eb.send_some(peer_b, idb);
      move(peer_a, a.session());
      for (const Event& ev : a.session().take_events()) table.dispatch(a, ev);
      move(peer_b, b.session());
      for (const Event& ev : b.session().take_events()) table.dispatch(b, ev);
      move(a.session(), peer_a);
      ea.take(peer_a, ida);
      move(b.session(), peer_b);
      eb.take(peer_b, idb);
    }
  }

  Relay* make(bool with_codec) {
    handshake(a.session(), peer_a);
    handshake(b.session(), peer_b);
    ida = peer_a.open();
    move(peer_a, a.session());
    a.session().take_events();
    idb = b.session().open();
    move(b.session(), peer_b);
    peer_b.take_events();
    Relay* r = table.create(&a, ida);
    if (with_codec) {
      auto c = std::make_unique<FakeCodec>();
      codec = c.get();
      codec->sink = &written;
      r->codec = std::move(c);
    }
    table.start_timers(r, t0);
    table.attach(r, &b, idb);
    return r;
  }
};

TEST_F(RelayFixture, AHandshakeNotDoneByTheDeadlineIsResetWithTimeoutOnBothEnds) {
  table.set_timeouts(10s, Duration::zero());
  make(true);
  EXPECT_EQ(table.next_deadline(), t0 + 10s);
  table.expire(t0 + 9s);
  EXPECT_EQ(table.size(), 1u);
  table.expire(t0 + 10s);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.codec_failures().timeout, 1u);
  EXPECT_EQ(reset_code(a.session(), peer_a, ida), Code::kTimeout);
  EXPECT_EQ(reset_code(b.session(), peer_b, idb), Code::kTimeout);
  EXPECT_EQ(table.next_deadline(), TimePoint::max());
}

TEST_F(RelayFixture, AnEstablishedCodecOutlivesTheHandshakeDeadline) {
  table.set_timeouts(10s, Duration::zero());
  make(true);
  codec->is_established = true;
  table.expire(t0 + 10s);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.next_deadline(), TimePoint::max()) << "no timer left without an idle timeout";
}

TEST_F(RelayFixture, AFailedHandshakeIsResetWithWrapperTlsNotProtocol) {
  table.set_timeouts(10s, Duration::zero());
  make(true);
  codec->has_failed = true;
  deliver(peer_a, a, ida, {'G', 'E', 'T'});
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.codec_failures().handshake, 1u);
  EXPECT_EQ(reset_code(a.session(), peer_a, ida), Code::kWrapperTls);
}

TEST_F(RelayFixture, AStreamWithNoByteForTheIdleTimeoutIsReset) {
  table.set_timeouts(10s, 5s);
  make(false);
  table.expire(t0 + 4s);
  EXPECT_EQ(table.size(), 1u);
  table.expire(t0 + 5s);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.idle_resets(), 1u);
  EXPECT_EQ(reset_code(a.session(), peer_a, ida), Code::kTimeout);
}

TEST_F(RelayFixture, AByteEitherWayMovesTheIdleDeadline) {
  table.set_timeouts(10s, 5s);
  make(false);
  deliver(peer_b, b, idb, {1});  // from OpenBao's side, at the real clock's now
  const TimePoint after = Clock::now();
  table.expire(t0 + 5s);  // the first deadline: re-armed from the byte, not reset
  EXPECT_EQ(table.size(), 1u);
  EXPECT_GE(table.next_deadline(), after + 5s - 100ms);
}

TEST_F(RelayFixture, OpenBaoRefusedAfterTheHandshakeIsAnswered502AndAFinNotAReset) {
  table.set_timeouts(10s, Duration::zero());
  make(true);
  codec->is_established = true;
  peer_b.reset(idb, Code::kUpstreamRefused);  // the forwarding process could not connect
  move(peer_b, b.session());
  for (const Event& ev : b.session().take_events())
    if (ev.kind == Event::kReset) table.dispatch(b, ev);
  EXPECT_EQ(codec->inner.rfind("HTTP/1.1 502 ", 0), 0u) << codec->inner;
  EXPECT_NE(codec->inner.find("{\"errors\":[\""), std::string::npos);
  EXPECT_NE(codec->inner.find("Connection: close"), std::string::npos);
  EXPECT_TRUE(codec->inner_closed);
  move(a.session(), peer_a);
  bool fin = false, reset = false;
  for (const Event& ev : peer_a.take_events()) {
    fin |= ev.kind == Event::kFin && ev.stream == ida;
    reset |= ev.kind == Event::kReset && ev.stream == ida;
  }
  EXPECT_TRUE(fin);
  EXPECT_FALSE(reset);
  // The wrapper closes after reading it: the relay is gone.
  EXPECT_EQ(table.size(), 1u);
  peer_a.close_write(ida);
  move(peer_a, a.session());
  for (const Event& ev : a.session().take_events())
    if (ev.kind == Event::kFin) table.dispatch(a, ev);
  EXPECT_EQ(table.size(), 0u);
}

TEST_F(RelayFixture, OpenBaoRefusedBeforeTheHandshakeStaysAReset) {
  table.set_timeouts(10s, Duration::zero());
  make(true);
  peer_b.reset(idb, Code::kUpstreamRefused);
  move(peer_b, b.session());
  for (const Event& ev : b.session().take_events())
    if (ev.kind == Event::kReset) table.dispatch(b, ev);
  EXPECT_TRUE(written.empty()) << written;
  EXPECT_EQ(reset_code(a.session(), peer_a, ida), Code::kUpstreamRefused);
}

TEST_F(RelayFixture, BytesCrossIntactBothWays) {
  make(false);
  ea.to_send = pattern(3 * 1024 * 1024 + 17, 1);  // several windows
  eb.to_send = pattern(2 * 1024 * 1024 + 5, 2);
  settle();
  EXPECT_EQ(eb.got.size(), ea.to_send.size());
  EXPECT_TRUE(eb.got == ea.to_send) << "bytes from a arrived changed at b";
  EXPECT_EQ(ea.got.size(), eb.to_send.size());
  EXPECT_TRUE(ea.got == eb.to_send) << "bytes from b arrived changed at a";
  EXPECT_EQ(table.size(), 1u);
}

TEST_F(RelayFixture, AFinEachWayArrivesAfterTheBytesAndTheLastOneFreesTheEntry) {
  make(false);
  ea.to_send = pattern(100000, 3);
  ea.fin_after = true;
  settle();
  EXPECT_TRUE(eb.fin);
  EXPECT_EQ(eb.got, ea.to_send);
  EXPECT_FALSE(ea.fin);
  EXPECT_EQ(table.size(), 1u) << "half-closed: the other way still carries bytes";
  eb.to_send = pattern(5000, 4);
  eb.fin_after = true;
  settle();
  EXPECT_TRUE(ea.fin);
  EXPECT_EQ(ea.got, eb.to_send);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.streams_on(a) + table.streams_on(b), 0u);
}

TEST_F(RelayFixture, AResetFromAReachesBWithItsCodeAndFreesTheEntry) {
  make(false);
  peer_a.reset(ida, Code::kCancel);
  settle(3);
  EXPECT_EQ(eb.reset, Code::kCancel);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.find(&b, idb), nullptr);
}

TEST_F(RelayFixture, AResetFromBReachesAWithItsCodeAndFreesTheEntry) {
  make(false);
  peer_b.reset(idb, Code::kUpstreamReset);
  settle(3);
  EXPECT_EQ(ea.reset, Code::kUpstreamReset);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.find(&a, ida), nullptr);
}

TEST_F(RelayFixture, AReaderThatDoesNotConsumeStopsTheWriterAtTheWindowThenItResumes) {
  make(false);
  eb.consume = false;
  ea.to_send = pattern(8 * 1024 * 1024, 5);
  settle();
  // At most a window in flight to b and a window held by the relay.
  EXPECT_LE(ea.sent, 2 * size_t{limits::kDefaultStreamWindow}) << "the writer never stalled";
  EXPECT_EQ(peer_a.send_capacity(ida), 0u);
  const size_t stalled_at = ea.sent;
  settle(20);
  EXPECT_EQ(ea.sent, stalled_at);
  eb.consume = true;
  settle(200);
  EXPECT_EQ(eb.got.size(), ea.to_send.size());
  EXPECT_TRUE(eb.got == ea.to_send);
}

TEST_F(RelayFixture, ALinkThatClosesResetsTheOtherEndsAndFreesEveryEntry) {
  make(false);
  table.link_closed(&a, Code::kCancel);
  settle(3);
  EXPECT_EQ(eb.reset, Code::kCancel);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.streams_on(b), 0u);
}

TEST_F(RelayFixture, ASecondRelayForOneStreamIsACallerBugAndAborts) {
  make(false);
  EXPECT_DEATH(table.create(&a, ida), "check failed");
  Relay* other = table.create(&a, ida + 2);
  EXPECT_DEATH(table.attach(other, &b, idb), "check failed");
}

TEST_F(RelayFixture, EventsForStreamsWithoutARelayAreIgnored) {
  make(false);
  const uint32_t other = peer_a.open();
  peer_a.send(other, Bytes(reinterpret_cast<const uint8_t*>("x"), 1), true);
  settle(3);
  EXPECT_EQ(table.size(), 1u);
  EXPECT_EQ(table.find(&a, other), nullptr);
  EXPECT_TRUE(eb.got.empty());
}

}  // namespace
}  // namespace ct

namespace ct {
namespace {

// docs/architecture.md, "Who connected": with inner_pending the inner stream
// opens only once the codec is established, through the table's opener, with
// the relay's origin; bytes the wrapper sent during the handshake are not lost.
struct PendingFixture : RelayFixture {
  int opener_calls = 0;
  std::vector<uint8_t> origin_seen;
  bool refuse = false;
  Relay* make_pending() {
    handshake(a.session(), peer_a);
    handshake(b.session(), peer_b);
    ida = peer_a.open();
    move(peer_a, a.session());
    a.session().take_events();
    Relay* r = table.create(&a, ida);
    auto c = std::make_unique<FakeCodec>();
    codec = c.get();
    codec->sink = &written;
    r->codec = std::move(c);
    r->origin = {3, 8, 0, 0, 0, 0, 0, 0, 0, 42};
    r->inner_pending = true;
    table.set_inner_opener([this](Relay& rr) -> Relay::End {
      opener_calls++;
      origin_seen = rr.origin;
      if (refuse) return {};
      idb = b.session().open(rr.origin);
      return {&b, idb};
    });
    table.start_timers(r, t0);
    return r;
  }
};

TEST_F(PendingFixture, TheInnerStreamOpensOnlyOnceTheHandshakeIsDone) {
  make_pending();
  deliver(peer_a, a, ida, {1, 2, 3});  // the ClientHello, say
  EXPECT_EQ(opener_calls, 0) << "opened before the handshake was done";
  EXPECT_EQ(b.session().open_streams(), 0u);
  EXPECT_EQ(codec->fed, 3u) << "the codec got the handshake bytes";
  codec->is_established = true;
  deliver(peer_a, a, ida, {4});
  EXPECT_EQ(opener_calls, 1);
  EXPECT_EQ(origin_seen, (std::vector<uint8_t>{3, 8, 0, 0, 0, 0, 0, 0, 0, 42}));
  ASSERT_NE(idb, 0u);
  move(b.session(), peer_b);
  bool opened = false;
  for (const Event& ev : peer_b.take_events())
    if (ev.kind == Event::kOpened && ev.stream == idb) opened = true;
  EXPECT_TRUE(opened);
  EXPECT_NE(table.find(&b, idb), nullptr) << "the inner end is indexed";
  deliver(peer_a, a, ida, {5});
  EXPECT_EQ(opener_calls, 1) << "opened once";
}

TEST_F(PendingFixture, NoInnerStreamIsResetWithResource) {
  make_pending();
  refuse = true;
  codec->is_established = true;
  deliver(peer_a, a, ida, {1});
  EXPECT_EQ(opener_calls, 1);
  EXPECT_EQ(reset_code(a.session(), peer_a, ida), Code::kResource);
  EXPECT_EQ(table.size(), 0u);
}

TEST_F(PendingFixture, AWrapperThatLeavesBeforeItsHandshakeIsDoneOpensNothing) {
  make_pending();
  peer_a.close_write(ida);
  move(peer_a, a.session());
  for (const Event& ev : a.session().take_events()) table.dispatch(a, ev);
  EXPECT_EQ(opener_calls, 0);
  EXPECT_EQ(table.size(), 0u);
  move(a.session(), peer_a);
  bool fin = false;
  for (const Event& ev : peer_a.take_events())
    if (ev.kind == Event::kFin && ev.stream == ida) fin = true;
  EXPECT_TRUE(fin) << "our half closes too, cleanly";
}

TEST_F(PendingFixture, APendingHandshakeStillMeetsItsDeadline) {
  table.set_timeouts(10s, Duration::zero());
  make_pending();
  table.expire(t0 + 10s);
  EXPECT_EQ(reset_code(a.session(), peer_a, ida), Code::kTimeout);
  EXPECT_EQ(opener_calls, 0);
  EXPECT_EQ(table.size(), 0u);
}

}  // namespace
}  // namespace ct
