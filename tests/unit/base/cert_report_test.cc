// Certificate expiry figures and warnings (shared/base/cert_report.h).
#include "shared/base/cert_report.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ct {
namespace {

constexpr int64_t kDay = 86400;
constexpr int64_t kNow = 1'800'000'000;

CertReport leaf(int64_t not_after, uint8_t pin_byte = 1) {
  CertReport c;
  c.role = CertRole::kLeaf;
  c.not_after = not_after;
  c.has_pin = true;
  c.pin.fill(pin_byte);
  return c;
}

CertState sample_state() {
  CertState s;
  s.pins = 2;
  s.certs.push_back(leaf(kNow + 90 * kDay));
  CertReport ca;
  ca.role = CertRole::kCa;
  ca.index = 1;
  ca.not_after = kNow + 3650 * kDay;
  s.certs.push_back(ca);
  CertReport peer = leaf(kNow + 20 * kDay, 7);
  peer.role = CertRole::kPeer;
  peer.index = 12;
  s.certs.push_back(peer);
  s.peer_pins.push_back({.link = 12, .current = true, .others = 1});
  return s;
}

TEST(CertState, RoundTripsThroughItsEncoding) {
  const CertState s = sample_state();
  std::vector<uint8_t> buf;
  ByteWriter w(buf, 1 << 16);
  put_cert_state(w, s);
  ASSERT_TRUE(w.ok());
  ByteReader r(buf);
  CertState back;
  ASSERT_TRUE(get_cert_state(r, &back));
  EXPECT_TRUE(r.finish());
  EXPECT_EQ(back, s);
}

TEST(CertState, RefusesAnUnknownRoleAndATruncatedBody) {
  std::vector<uint8_t> buf;
  ByteWriter w(buf, 1 << 16);
  put_cert_state(w, sample_state());
  std::vector<uint8_t> bad = buf;
  bad[6] = kCertRoles;  // the first certificate's role (after u32 pins, u16 count)
  ByteReader r1(bad);
  CertState out;
  EXPECT_FALSE(get_cert_state(r1, &out));
  std::vector<uint8_t> cut(buf.begin(), buf.end() - 1);
  ByteReader r2(cut);
  EXPECT_FALSE(get_cert_state(r2, &out));
}

TEST(CertState, F46_PeerPinsRenderPerLinkAndRefuseImpossibleCounts) {
  CertState s;
  s.peer_pins.push_back({.link = 3, .current = true, .others = 0});
  s.peer_pins.push_back({.link = 4, .current = false, .others = 2});
  const std::string text = render_cert_state("cloudtaser_broker", s);
  EXPECT_NE(text.find("# TYPE cloudtaser_broker_peer_pins gauge\n"), std::string::npos) << text;
  EXPECT_NE(text.find("cloudtaser_broker_peer_pins{link=\"3\",key=\"current\"} 1\n"),
            std::string::npos);
  EXPECT_NE(text.find("cloudtaser_broker_peer_pins{link=\"3\",key=\"other\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("cloudtaser_broker_peer_pins{link=\"4\",key=\"current\"} 0\n"),
            std::string::npos);
  EXPECT_NE(text.find("cloudtaser_broker_peer_pins{link=\"4\",key=\"other\"} 2\n"),
            std::string::npos);
  EXPECT_EQ(render_cert_state("x", CertState{}).find("_peer_pins"), std::string::npos)
      << "no sample without a peer that sent PINS";
  std::vector<uint8_t> buf;
  ByteWriter w(buf, 1 << 16);
  put_cert_state(w, s);
  std::vector<uint8_t> bad = buf;
  bad[bad.size() - 1] = 17;  // more other keys than a PINS can hold
  ByteReader r(bad);
  CertState out;
  EXPECT_FALSE(get_cert_state(r, &out));
}

TEST(CertState, RendersNotAfterPinsAndPeerLinks) {
  const std::string text = render_cert_state("cloudtaser_broker", sample_state());
  const std::string pin1 = format_pin(leaf(0).pin);
  EXPECT_NE(text.find("cloudtaser_broker_certificate_not_after_timestamp_seconds{certificate="
                      "\"leaf\",index=\"0\",pin=\"" +
                      pin1 + "\"} " + std::to_string(kNow + 90 * kDay) + "\n"),
            std::string::npos)
      << text;
  EXPECT_NE(text.find("cloudtaser_broker_certificate_not_after_timestamp_seconds{certificate="
                      "\"ca\",index=\"1\"} "),
            std::string::npos);
  EXPECT_NE(text.find("cloudtaser_broker_peer_certificate_not_after_timestamp_seconds{link="
                      "\"12\",pin=\"" +
                      format_pin(leaf(0, 7).pin) + "\"} "),
            std::string::npos);
  EXPECT_NE(text.find("\ncloudtaser_broker_pins_configured 2\n"), std::string::npos);
  EXPECT_EQ(render_cert_state("x", sample_state(), false).find("pins_configured"),
            std::string::npos);
}

TEST(ExpiryWarnings, EachThresholdOnceThenAgainOnlyForANewCertificate) {
  ExpiryWarnings w;
  CertState s;
  s.certs.push_back(leaf(kNow + 40 * kDay));
  EXPECT_TRUE(w.due(s, kNow).empty());      // 40 days out: nothing yet
  auto lines = w.due(s, kNow + 11 * kDay);  // 29 days left
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("within 30 day(s)"), std::string::npos) << lines[0];
  EXPECT_TRUE(w.due(s, kNow + 12 * kDay).empty());  // the 30-day warning was given
  lines = w.due(s, kNow + 34 * kDay);               // 6 days left
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("within 7 day(s)"), std::string::npos);
  EXPECT_TRUE(w.due(s, kNow + 35 * kDay).empty());
  EXPECT_EQ(w.due(s, kNow + 39 * kDay + 1).size(), 1u);  // under a day
  EXPECT_EQ(w.due(s, kNow + 41 * kDay).size(), 1u);      // expired
  EXPECT_TRUE(w.due(s, kNow + 42 * kDay).empty());
  // Renewed (a new not-after): the old warnings are forgotten.
  s.certs[0] = leaf(kNow + 45 * kDay);
  EXPECT_EQ(w.due(s, kNow + 42 * kDay).size(), 1u);
}

TEST(ExpiryWarnings, ACertificateAlreadyNearIsWarnedOnceForTheNearestThreshold) {
  ExpiryWarnings w;
  CertState s;
  s.certs.push_back(leaf(kNow + 3 * kDay));
  auto lines = w.due(s, kNow);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("within 7 day(s)"), std::string::npos);
  EXPECT_NE(lines[0].find("expires in 3 day(s)"), std::string::npos);
  EXPECT_TRUE(w.due(s, kNow + 60).empty());
}

TEST(ExpiryWarnings, PeersAreKnownByPinNotByLink) {
  ExpiryWarnings w;
  CertState s;
  CertReport p = leaf(kNow + 2 * kDay, 9);
  p.role = CertRole::kPeer;
  p.index = 1;
  s.certs.push_back(p);
  p.index = 2;  // a second link from the same bridge
  s.certs.push_back(p);
  EXPECT_EQ(w.due(s, kNow).size(), 1u);
  s.certs.erase(s.certs.begin());  // link 1 gone, a reconnect on link 3
  s.certs.push_back(p);
  s.certs.back().index = 3;
  EXPECT_TRUE(w.due(s, kNow + 1).empty());
}

}  // namespace
}  // namespace ct
