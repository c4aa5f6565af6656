// SPKI pins and the base64 they are written in (shared/base/pin.h).
#include "shared/base/pin.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ct {
namespace {

TEST(Base64, Rfc4648Vectors) {
  const std::pair<std::string, std::string> v[] = {
      {"", ""},
      {"f", "Zg=="},
      {"fo", "Zm8="},
      {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="},
      {"fooba", "Zm9vYmE="},
      {"foobar", "Zm9vYmFy"},
  };
  for (const auto& [plain, enc] : v) {
    EXPECT_EQ(base64_encode(as_bytes(plain)), enc);
    auto dec = base64_decode(enc);
    ASSERT_TRUE(dec.has_value()) << enc;
    EXPECT_EQ(std::string(dec->begin(), dec->end()), plain);
  }
}

TEST(Base64, RoundTripEveryLengthAndByte) {
  std::vector<uint8_t> data;
  for (size_t n = 0; n < 300; n++) {
    auto dec = base64_decode(base64_encode(data));
    ASSERT_TRUE(dec.has_value()) << n;
    EXPECT_EQ(*dec, data);
    data.push_back(static_cast<uint8_t>(n * 37 + 11));
  }
}

TEST(Base64, Rejects) {
  for (std::string_view bad : {"Z", "Zg", "Zg=", "Zg===", "Z===", "====", "Zg=a", "Z=g=",
                               "Zm9v!A==", "Zm9v YQ==", "Zg==Zg==", "Zm9-", "Zm9_", "Zm9\n"}) {
    EXPECT_FALSE(base64_decode(bad).has_value()) << bad;
  }
}

TEST(Pin, RoundTrip) {
  Pin p;
  for (size_t i = 0; i < p.size(); i++) p[i] = static_cast<uint8_t>(0xff - i * 7);
  const std::string s = format_pin(p);
  EXPECT_EQ(s.rfind("sha256//", 0), 0u);
  EXPECT_EQ(s.size(), 8u + 44u);
  auto got = parse_pin(s);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(*got, p);
}

TEST(Pin, Rejects) {
  Pin p{};
  const std::string good = format_pin(p);
  ASSERT_TRUE(parse_pin(good).has_value());
  const std::string b64 = good.substr(8);
  EXPECT_FALSE(parse_pin(b64).has_value());               // no prefix
  EXPECT_FALSE(parse_pin("SHA256//" + b64).has_value());  // prefix is case-sensitive
  EXPECT_FALSE(parse_pin("sha1//" + b64).has_value());
  EXPECT_FALSE(parse_pin("sha256//").has_value());  // empty
  EXPECT_FALSE(parse_pin("sha256/" + b64).has_value());
  EXPECT_FALSE(parse_pin(good + "=").has_value());  // bad base64 length
  EXPECT_FALSE(parse_pin(good.substr(0, good.size() - 1) + "!").has_value());
  // 31 and 33 bytes are not SHA-256.
  std::vector<uint8_t> b31(31, 1), b33(33, 1);
  EXPECT_FALSE(parse_pin("sha256//" + base64_encode(b31)).has_value());
  EXPECT_FALSE(parse_pin("sha256//" + base64_encode(b33)).has_value());
  EXPECT_FALSE(parse_pin("").has_value());
}

}  // namespace
}  // namespace ct
