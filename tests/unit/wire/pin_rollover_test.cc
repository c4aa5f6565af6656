// The reload decision of docs/protocol.md §5b: a new key goes into service
// only when every linked version 4 peer pins it.
#include "shared/wire/pin_rollover.h"

#include <gtest/gtest.h>

namespace ct {
namespace {

Pin pin(uint8_t f) {
  Pin p;
  p.fill(f);
  return p;
}

TEST(KeyRollover, F46_TheSameKeyIsAlwaysAllowed) {
  const std::optional<std::vector<Pin>> pins = std::vector<Pin>{pin(9)};
  auto v = check_key_rollover(pin(1), pin(1), {{1, 4, &pins}}, "bridge");
  EXPECT_TRUE(v.allowed);
  EXPECT_TRUE(v.unchecked.empty());
}

TEST(KeyRollover, F46_AtStartAnyKeyIsAllowed) {
  const std::optional<std::vector<Pin>> pins = std::vector<Pin>{pin(9)};
  EXPECT_TRUE(check_key_rollover(std::nullopt, pin(1), {{1, 4, &pins}}, "bridge").allowed);
}

TEST(KeyRollover, F46_ANewKeyEveryPeerPinsIsAllowed) {
  const std::optional<std::vector<Pin>> a = std::vector<Pin>{pin(1), pin(2)};
  const std::optional<std::vector<Pin>> b = std::vector<Pin>{pin(2)};
  EXPECT_TRUE(check_key_rollover(pin(1), pin(2), {{1, 4, &a}, {2, 4, &b}}, "broker").allowed);
}

TEST(KeyRollover, F46_ANewKeyOnePeerDoesNotPinIsRefusedWithWhatToDo) {
  const std::optional<std::vector<Pin>> a = std::vector<Pin>{pin(1), pin(2)};
  const std::optional<std::vector<Pin>> b = std::vector<Pin>{pin(1)};
  auto v = check_key_rollover(pin(1), pin(2), {{1, 4, &a}, {7, 4, &b}}, "broker");
  EXPECT_FALSE(v.allowed);
  const std::string p = format_pin(pin(2));
  EXPECT_NE(v.refusal.find("new key " + p), std::string::npos) << v.refusal;
  EXPECT_NE(v.refusal.find("broker on conn=7"), std::string::npos) << v.refusal;
  EXPECT_NE(v.refusal.find("publish " + p + " in the broker's pin file first"), std::string::npos)
      << v.refusal;
}

TEST(KeyRollover, F46_APeerBelowVersionFourIsNotCheckedButNamed) {
  const std::optional<std::vector<Pin>> none;
  auto v = check_key_rollover(pin(1), pin(2), {{3, 3, &none}}, "bridge");
  EXPECT_TRUE(v.allowed);
  EXPECT_EQ(v.unchecked, std::vector<uint64_t>{3});
}

TEST(KeyRollover, F46_AVersionFourPeerThatPinsNothingAcceptsAnyKey) {
  const std::optional<std::vector<Pin>> none;  // it sent no PINS: CA only
  EXPECT_TRUE(check_key_rollover(pin(1), pin(2), {{3, 4, &none}}, "bridge").allowed);
}

TEST(KeyRollover, F46_PeerPinsFiguresCountTheOtherKeys) {
  auto r = peer_pins_report(9, {pin(1), pin(2), pin(1)}, pin(1));
  EXPECT_EQ(r.link, 9u);
  EXPECT_TRUE(r.current);
  EXPECT_EQ(r.others, 1) << "our pin listed twice is still not another key";
  r = peer_pins_report(9, {pin(2), pin(3)}, pin(1));
  EXPECT_FALSE(r.current);
  EXPECT_EQ(r.others, 2);
  r = peer_pins_report(9, {pin(2)}, std::nullopt);
  EXPECT_FALSE(r.current);
  EXPECT_EQ(r.others, 1);
}

}  // namespace
}  // namespace ct
