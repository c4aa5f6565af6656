// Beacon mode's derived values (docs/beacon.md §2): the rendezvous id is the
// HMAC of the label under the key (checked against openssl's own command
// line result for a fixed key), key files are refused with a reason, and the
// beacon order is rendezvous hashing: the same on both sides, stable when a
// beacon is added, and spread over the beacons across ids.
#include "shared/tls/pairing.h"

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

namespace ct {
namespace {

TEST(Pairing, TheIdIsTheHmacOfTheLabel) {
  // printf 'cloudtaser beacon rendezvous v1' |
  //   openssl dgst -sha256 -mac HMAC -macopt hexkey:$(printf '%064d' 0 | tr 0 11)
  // (a key of 32 bytes 0x11).
  const std::vector<uint8_t> key(32, 0x11);
  const rdv::RendezvousId id = rendezvous_id(key);
  EXPECT_EQ(rendezvous_name(id), "d4d318c447142a9a");
  std::vector<uint8_t> other = key;
  other[31] ^= 1;
  EXPECT_NE(rendezvous_id(other), id);
}

TEST(Pairing, KeyFilesAreCheckedWithAReason) {
  const std::string good = "ERERERERERERERERERERERERERERERERERERERERERE=\n";
  auto k = parse_pairing_key(good);
  ASSERT_TRUE(k) << k.error().what;
  EXPECT_EQ(k->size(), 32u);
  struct Case {
    std::string text;
    const char* why;
  };
  const Case cases[] = {
      {"", "empty"},
      {"  \n", "empty"},
      {"ERERERERERERERERERERERERERERERERERERERERERE= second\n", "more than one line"},
      {"not-base64!", "not base64"},
      {"EREREREREREREREREREREQ==\n", "too short: 16 bytes"},
      {std::string(5000, 'A'), "larger than"},
  };
  for (const Case& c : cases) {
    auto r = parse_pairing_key(c.text);
    ASSERT_FALSE(r) << c.why;
    EXPECT_NE(r.error().what.find(c.why), std::string::npos) << r.error().what;
  }
}

TEST(Pairing, AddressesAreNormalised) {
  EXPECT_EQ(*normalise_beacon_address("Beacon.Example.COM"), "beacon.example.com:443");
  EXPECT_EQ(*normalise_beacon_address("beacon.example.com:8443"), "beacon.example.com:8443");
  EXPECT_EQ(*normalise_beacon_address("192.0.2.7"), "192.0.2.7:443");
  EXPECT_EQ(*normalise_beacon_address("[2001:DB8::1]:443"), "[2001:db8::1]:443");
  EXPECT_EQ(*normalise_beacon_address("[2001:db8::1]"), "[2001:db8::1]:443");
  EXPECT_FALSE(normalise_beacon_address(""));
  EXPECT_FALSE(normalise_beacon_address("2001:db8::1"));
  EXPECT_FALSE(normalise_beacon_address("beacon:99999"));
}

TEST(Pairing, TheBeaconOrderIsRendezvousHashing) {
  const std::vector<std::string> three = {"a.example:443", "b.example:443", "c.example:443"};
  std::map<size_t, int> firsts;
  for (uint8_t k = 0; k < 90; k++) {
    const rdv::RendezvousId id = rendezvous_id(std::vector<uint8_t>(32, k));
    const auto order = beacon_order(id, three);
    ASSERT_EQ(order.size(), 3u);
    firsts[order[0]]++;
    // The same on every call (both sides compute it alone).
    EXPECT_EQ(beacon_order(id, three), order);
    // Adding a fourth beacon keeps the others in their relative order.
    auto four = three;
    four.push_back("d.example:443");
    std::vector<size_t> without_d;
    for (size_t i : beacon_order(id, four))
      if (i != 3) without_d.push_back(i);
    EXPECT_EQ(without_d, order);
  }
  // Ids spread over the beacons (each gets a fair share of 90: 30 ± 15).
  for (size_t b = 0; b < 3; b++) EXPECT_GT(firsts[b], 15) << b;
}

}  // namespace
}  // namespace ct
