// The beacon's two internal bodies (beacon/options.h: the LISTENER body to
// the TLS process; beacon/metrics.h: its STATS): each decodes exactly what
// its encoder wrote, refuses a truncated, longer or out-of-range body (a bad
// internal message ends the process), and the figures render as Prometheus
// text with every label.
#include <gtest/gtest.h>

#include "beacon/metrics.h"
#include "beacon/options.h"

namespace ct::beacon {
namespace {

TEST(Options, RoundTripAndLimits) {
  Options o;
  o.pairing_timeout_ms = 1000;
  o.keepalive_ms = 2000;
  o.waiting_per_id = 2;
  o.waiting_total = 9;
  o.per_source = 3;
  const auto b = encode_options(o);
  EXPECT_EQ(b.size(), kOptionsSize);
  auto d = decode_options(b);
  ASSERT_TRUE(d);
  EXPECT_EQ(d->pairing_timeout_ms, 1000u);
  EXPECT_EQ(d->keepalive_ms, 2000u);
  EXPECT_EQ(d->waiting_per_id, 2u);
  EXPECT_EQ(d->waiting_total, 9u);
  EXPECT_EQ(d->per_source, 3u);
  const PairingLimits l = d->pairing();
  EXPECT_EQ(l.brokers_per_id, 2u);
  EXPECT_EQ(l.bridges_per_id, 2u);
  EXPECT_EQ(l.pairing_timeout, std::chrono::seconds(1));
  EXPECT_EQ(l.keepalive, std::chrono::seconds(2));
}

TEST(Options, DefaultsAreTheSpecification) {
  const PairingLimits l = Options{}.pairing();
  const PairingLimits spec;  // docs/beacon.md §3, as the table's own defaults
  EXPECT_EQ(l.brokers_per_id, spec.brokers_per_id);
  EXPECT_EQ(l.bridges_per_id, spec.bridges_per_id);
  EXPECT_EQ(l.waiting_total, spec.waiting_total);
  EXPECT_EQ(l.pairing_timeout, spec.pairing_timeout);
  EXPECT_EQ(l.keepalive, spec.keepalive);
}

TEST(Options, MalformedBodiesAreRefused) {
  auto b = encode_options(Options{});
  EXPECT_FALSE(decode_options(Bytes(b.data(), b.size() - 1)));
  auto longer = b;
  longer.push_back(0);
  EXPECT_FALSE(decode_options(longer));
  Options zero;
  zero.waiting_per_id = 0;
  EXPECT_FALSE(decode_options(encode_options(zero)));
  Options big;
  big.pairing_timeout_ms = kMaxTimeoutMs + 1;
  EXPECT_FALSE(decode_options(encode_options(big)));
}

TEST(Stats, RoundTripExactly) {
  Stats s;
  s.listening = 1;
  s.accepted = 5;
  s.refused[static_cast<size_t>(Refused::kNoPeer)] = 2;
  s.waiting_brokers = 3;
  s.waiting_bridges = 1;
  s.pairs_active = 1;
  s.pairs_total = 4;
  s.bytes_broker_to_bridge = 1u << 30;
  s.bytes_bridge_to_broker = 7;
  s.answers[0] = 8;
  s.log_dropped = 1;
  const auto b = encode_stats(s);
  EXPECT_LE(b.size(), kMaxStatsSize);
  auto d = decode_stats(b);
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, s);
  EXPECT_FALSE(decode_stats(Bytes(b.data(), b.size() - 1)));
  auto longer = b;
  longer.push_back(0);
  EXPECT_FALSE(decode_stats(longer));
  Stats bad = s;
  bad.listening = 2;
  EXPECT_FALSE(decode_stats(encode_stats(bad)));
}

TEST(Stats, RenderNamesEveryReasonAndCode) {
  Stats s;
  s.pairs_total = 4;
  s.answers[3] = 2;
  const std::string text = render_metrics(s, {true, 0, 0}, "1.2.3");
  EXPECT_NE(text.find("cloudtaser_beacon_build_info{version=\"1.2.3\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("cloudtaser_beacon_draining 1\n"), std::string::npos);
  EXPECT_NE(text.find("cloudtaser_beacon_pairs_total 4\n"), std::string::npos);
  EXPECT_NE(text.find("cloudtaser_beacon_answers_total{code=\"NO_PEER\"} 2\n"), std::string::npos);
  for (size_t r = 0; r < kRefusedKinds; r++)
    EXPECT_NE(text.find(std::string("reason=\"") + refused_name(static_cast<Refused>(r)) + "\""),
              std::string::npos);
  EXPECT_NE(text.find("cloudtaser_beacon_waiting{role=\"bridge\"} 0\n"), std::string::npos);
}

}  // namespace
}  // namespace ct::beacon
