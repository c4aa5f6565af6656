// The bridge's OpenBao health probe, sans-IO: the status line decides, every
// malformed or oversized answer is unreachable, and the poller changes state
// (and so logs and tells the brokers) only when the answer differs.
#include "bridge/vault_health.h"

#include <gtest/gtest.h>

#include <string>

namespace ct::bridge {
namespace {

using namespace std::chrono_literals;

std::optional<UpstreamState> answer_of(const std::string& text) {
  HealthAnswer a;
  return a.feed(as_bytes(text));
}

TEST(VaultHealth, OpenBaosCodesMapToItsStates) {
  EXPECT_EQ(upstream_state_of_http(200), UpstreamState::kActive);
  EXPECT_EQ(upstream_state_of_http(429), UpstreamState::kStandby);
  EXPECT_EQ(upstream_state_of_http(473), UpstreamState::kPerfStandby);
  EXPECT_EQ(upstream_state_of_http(501), UpstreamState::kUninitialized);
  EXPECT_EQ(upstream_state_of_http(503), UpstreamState::kSealed);
  // A DR secondary serves no reads: not a node to send wrappers to.
  EXPECT_EQ(upstream_state_of_http(472), UpstreamState::kUnreachable);
  for (int other : {0, 100, 204, 301, 404, 500, 502, 999})
    EXPECT_EQ(upstream_state_of_http(other), UpstreamState::kUnreachable) << other;
}

TEST(VaultHealth, TheRequestIsOneGetThatAsksOpenBaoToClose) {
  EXPECT_EQ(health_request("/v1/sys/health", "127.0.0.1:8200"),
            "GET /v1/sys/health HTTP/1.1\r\nHost: 127.0.0.1:8200\r\nUser-Agent: vault-bridge\r\n"
            "Accept: application/json\r\nConnection: close\r\n\r\n");
}

TEST(VaultHealth, TheStatusLineDecidesWhateverFollows) {
  EXPECT_EQ(answer_of("HTTP/1.1 429 Too Many Requests\r\nContent-Length: 2\r\n\r\n{}"),
            UpstreamState::kStandby);
  EXPECT_EQ(answer_of("HTTP/1.0 503 Service Unavailable\r\n"), UpstreamState::kSealed);
  EXPECT_EQ(answer_of("HTTP/1.1 200\r\n"), UpstreamState::kActive);  // no reason phrase
  EXPECT_EQ(answer_of("HTTP/1.1 473 \r\n"), UpstreamState::kPerfStandby);
  EXPECT_EQ(answer_of("HTTP/1.1 200 OK"), std::nullopt);  // not complete yet
}

TEST(VaultHealth, AnAnswerByteByByteDecidesAtTheEndOfTheLine) {
  const std::string text = "HTTP/1.1 501 Not Implemented\r\nX: y\r\n\r\n";
  HealthAnswer a;
  const size_t eol = text.find('\n');
  for (size_t i = 0; i < text.size(); i++) {
    const auto r = a.feed(as_bytes(std::string_view(text).substr(i, 1)));
    if (i < eol)
      EXPECT_FALSE(r.has_value()) << i;
    else
      EXPECT_EQ(r, UpstreamState::kUninitialized) << i;
  }
  EXPECT_FALSE(a.over_cap());
}

TEST(VaultHealth, AMalformedAnswerIsUnreachable) {
  for (const std::string& bad :
       {std::string("HTTP/1.1 200 OK\n"),                // bare LF
        std::string("HTTP/2 200 OK\r\n"),                // not HTTP/1.x
        std::string("HTTP/1.1 20 OK\r\n"),               // two digits
        std::string("HTTP/1.1 2000 OK\r\n"),             // four
        std::string("HTTP/1.1 +20 OK\r\n"),              // a sign
        std::string("HTTP/1.1 200OK\r\n"),               // no space after the code
        std::string("http/1.1 200 OK\r\n"),              // the version is case-sensitive
        std::string("GET /v1/sys/health HTTP/1.1\r\n"),  // an echo of our request
        std::string("\r\n"), std::string("\x16\x03\x03\x00\x02\x02\x46\r\n", 9)})
    EXPECT_EQ(answer_of(bad), UpstreamState::kUnreachable) << bad;
  // A status line that never ends is decided at its cap, not buffered on.
  HealthAnswer a;
  const std::string longline(kMaxHealthStatusLine, 'H');
  EXPECT_FALSE(a.feed(as_bytes(longline)).has_value());
  EXPECT_EQ(a.feed(as_bytes("H")), UpstreamState::kUnreachable);
}

TEST(VaultHealth, MoreThanTheCapAsksForTheStreamToEnd) {
  HealthAnswer a;
  EXPECT_EQ(a.feed(as_bytes("HTTP/1.1 200 OK\r\n")), UpstreamState::kActive);
  const std::string body(kMaxHealthAnswer, 'x');
  EXPECT_EQ(a.feed(as_bytes(body)), UpstreamState::kActive);
  EXPECT_TRUE(a.over_cap());
}

struct PollerFixture : ::testing::Test {
  const TimePoint t0 = TimePoint{} + 1000s;
  HealthPoller p{5s, 2s};
};

TEST_F(PollerFixture, OffWithIntervalZeroTheStateStaysUnknown) {
  HealthPoller off{0s, 2s};
  off.start(t0);
  EXPECT_FALSE(off.enabled());
  EXPECT_FALSE(off.due(t0 + 3600s));
  EXPECT_EQ(off.next_deadline(), TimePoint::max());
  EXPECT_EQ(off.state(), UpstreamState::kUnknown);
}

TEST_F(PollerFixture, NothingIsDueBeforeStart) {
  EXPECT_FALSE(p.due(t0 + 3600s));
  EXPECT_EQ(p.next_deadline(), TimePoint::max());
}

TEST_F(PollerFixture, AChangeIsReportedOnceAndARepeatNotAtAll) {
  p.start(t0);
  ASSERT_TRUE(p.due(t0));
  p.begin(t0);
  EXPECT_FALSE(p.due(t0));  // one at a time
  auto c = p.feed(as_bytes("HTTP/1.1 429 Too Many Requests\r\n"));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->from, UpstreamState::kUnknown);
  EXPECT_EQ(c->to, UpstreamState::kStandby);
  EXPECT_FALSE(p.feed(as_bytes("Content-Length: 0\r\n\r\n")).has_value());
  EXPECT_FALSE(p.end(t0 + 10ms).has_value());  // decided already
  EXPECT_FALSE(p.in_flight());
  // The next one an interval after this one began.
  EXPECT_FALSE(p.due(t0 + 4999ms));
  EXPECT_TRUE(p.due(t0 + 5s));
  EXPECT_EQ(p.next_deadline(), t0 + 5s);
  p.begin(t0 + 5s);
  EXPECT_FALSE(p.feed(as_bytes("HTTP/1.1 429 x\r\n")).has_value());  // the same: no change
  EXPECT_FALSE(p.end(t0 + 5s).has_value());
  p.begin(t0 + 10s);
  c = p.feed(as_bytes("HTTP/1.1 503 Service Unavailable\r\n"));
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->from, UpstreamState::kStandby);
  EXPECT_EQ(c->to, UpstreamState::kSealed);
  EXPECT_EQ(p.state(), UpstreamState::kSealed);
}

TEST_F(PollerFixture, NoAnswerInTimeOrAnEndBeforeTheStatusLineIsUnreachable) {
  p.start(t0);
  p.begin(t0);
  EXPECT_EQ(p.next_deadline(), t0 + 2s);
  EXPECT_FALSE(p.expired(t0 + 1999ms));
  EXPECT_TRUE(p.expired(t0 + 2s));
  EXPECT_FALSE(p.feed(as_bytes("HTTP/1.1 2")).has_value());  // half a line
  auto c = p.end(t0 + 2s);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->to, UpstreamState::kUnreachable);
  // A probe that outlived the interval is followed at once, not back in time.
  HealthPoller slow{1s, 2s};
  slow.start(t0);
  slow.begin(t0);
  slow.end(t0 + 2s);
  EXPECT_EQ(slow.next_deadline(), t0 + 2s);
}

TEST_F(PollerFixture, WithoutADataChannelTheProbeWaitsThenCountsAsFailedAfterItsTimeout) {
  p.start(t0);
  ASSERT_TRUE(p.due(t0));
  EXPECT_TRUE(p.defer(t0));  // the forwarding process is starting: not a verdict yet
  EXPECT_EQ(p.state(), UpstreamState::kUnknown);
  EXPECT_FALSE(p.due(t0 + 99ms));
  EXPECT_EQ(p.next_deadline(), t0 + kHealthRetry);
  EXPECT_TRUE(p.due(t0 + kHealthRetry));
  EXPECT_TRUE(p.defer(t0 + 1999ms));
  EXPECT_FALSE(p.defer(t0 + 2s));  // a whole timeout without a channel: unreachable
  p.begin(t0 + 2s);
  auto c = p.end(t0 + 2s);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->to, UpstreamState::kUnreachable);
  // A probe that did run starts the count again.
  ASSERT_TRUE(p.due(t0 + 7s));
  EXPECT_TRUE(p.defer(t0 + 7s));
  EXPECT_TRUE(p.defer(t0 + 8s));
  p.begin(t0 + 8s);
  p.end(t0 + 8100ms);
  EXPECT_TRUE(p.defer(t0 + 13100ms));
  EXPECT_TRUE(p.defer(t0 + 15s));
}

TEST_F(PollerFixture, AnAbandonedProbeChangesNothingAndTheNextIsDueAtOnce) {
  p.start(t0);
  p.begin(t0);
  EXPECT_FALSE(p.feed(as_bytes("HTTP/1.1 2")).has_value());
  p.abandon(t0 + 1s);  // the data channel went away: not OpenBao's doing
  EXPECT_FALSE(p.in_flight());
  EXPECT_EQ(p.state(), UpstreamState::kUnknown);
  EXPECT_FALSE(p.end(t0 + 1s).has_value());  // nothing left to end
  EXPECT_TRUE(p.due(t0 + 1s));
  // Stopped (a drain), then abandoned: nothing more is due.
  p.begin(t0 + 1s);
  p.stop();
  p.abandon(t0 + 2s);
  EXPECT_FALSE(p.due(t0 + 3600s));
  EXPECT_EQ(p.state(), UpstreamState::kUnknown);
}

TEST_F(PollerFixture, AStoppedPollerFinishesItsProbeAndStartsNoOther) {
  p.start(t0);
  p.begin(t0);
  p.stop();
  EXPECT_EQ(p.next_deadline(), t0 + 2s);  // the one in flight still has its deadline
  p.end(t0 + 1s);
  EXPECT_FALSE(p.due(t0 + 3600s));
  EXPECT_EQ(p.next_deadline(), TimePoint::max());
}

}  // namespace
}  // namespace ct::bridge
