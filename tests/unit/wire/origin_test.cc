// The stream's origin (docs/protocol.md §3a) and the PROXY protocol v2 header
// made from it (shared/wire/proxy_header.h), byte for byte.
#include "shared/wire/origin.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "shared/wire/proxy_header.h"

namespace ct {
namespace {

using Buf = std::vector<uint8_t>;

OriginAddr v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
  OriginAddr x;
  x.family = 4;
  x.addr[0] = a;
  x.addr[1] = b;
  x.addr[2] = c;
  x.addr[3] = d;
  x.port = port;
  return x;
}

OriginAddr v6_last(uint8_t last, uint16_t port) {  // ::last
  OriginAddr x;
  x.family = 6;
  x.addr[15] = last;
  x.port = port;
  return x;
}

Origin full_v4() {
  Origin o;
  o.source = v4(127, 0, 0, 2, 40000);
  o.dest = v4(127, 0, 0, 1, 8443);
  o.stream_id = 0x0123456789abcdefu;
  o.cluster = "prod-eu";
  o.authority = "openbao.cloudtaser.svc";
  return o;
}

std::string why_of(const Buf& b) {
  std::string_view why;
  auto o = decode_origin(b, &why);
  return o ? std::string() : std::string(why);
}

TEST(Origin, F45_EncodingIsTheSpecifiedTlvList) {
  Origin o;
  o.source = v4(10, 1, 2, 3, 0x1234);
  o.stream_id = 0x0102030405060708u;
  o.cluster = "c1";
  const Buf want = {1, 7, 4,   10, 1, 2, 3, 0x12, 0x34,     // SOURCE
                    3, 8, 1,   2,  3, 4, 5, 6,    7,    8,  // STREAM_ID
                    4, 2, 'c', '1'};                        // CLUSTER
  EXPECT_EQ(encode_origin(o), want);
  EXPECT_TRUE(encode_origin(Origin{}).empty());
}

TEST(Origin, F45_RoundTrip) {
  for (const Origin& o : {full_v4(), Origin{}, [] {
                            Origin x;
                            x.source = v6_last(1, 5);
                            x.dest = v6_last(1, 8443);
                            x.stream_id = 1;
                            x.cluster = std::string(limits::kMaxClusterName, 'x');
                            x.authority = std::string(limits::kMaxAuthority, 'a');
                            return x;
                          }()}) {
    const Buf b = encode_origin(o);
    EXPECT_LE(b.size(), limits::kMaxOriginPayload);
    std::string_view why;
    auto back = decode_origin(b, &why);
    ASSERT_TRUE(back.has_value()) << why;
    EXPECT_EQ(*back, o);
  }
  // Every field at its longest is exactly the bound the header check uses.
  Origin longest;
  longest.source = v6_last(1, 5);
  longest.dest = v6_last(2, 6);
  longest.stream_id = 1;
  longest.cluster = std::string(limits::kMaxClusterName, 'x');
  longest.authority = std::string(limits::kMaxAuthority, 'a');
  EXPECT_EQ(encode_origin(longest).size(), limits::kMaxOriginPayload);
}

TEST(Origin, F45_InvalidFieldsAreLeftOutNotSentMalformed) {
  Origin o;
  o.cluster = "has space";
  o.authority = std::string(limits::kMaxAuthority + 1, 'a');
  o.source = OriginAddr{};  // family 0
  EXPECT_TRUE(encode_origin(o).empty());
}

TEST(Origin, F45_EveryMalformedPayloadIsRefusedWithAReason) {
  const Buf ok_src = {1, 7, 4, 10, 0, 0, 1, 0, 80};
  ASSERT_EQ(why_of(ok_src), "");
  struct Case {
    const char* name;
    Buf b;
  };
  const Case cases[] = {
      {"truncated TLV header", {1}},
      {"TLV past the end", {1, 7, 4, 10, 0, 0, 1, 0}},
      {"unknown type 0", {0, 0}},
      {"unknown type 6", {6, 1, 'x'}},
      {"unknown type 255", {255, 0}},
      {"out of order", {3, 8, 0, 0, 0, 0, 0, 0, 0, 1, 1, 7, 4, 10, 0, 0, 1, 0, 80}},
      {"repeated", {4, 1, 'a', 4, 1, 'b'}},
      {"family 5", {1, 7, 5, 10, 0, 0, 1, 0, 80}},
      {"family 4 with 16 bytes", {1, 19, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 80}},
      {"family 6 with 4 bytes", {1, 7, 6, 10, 0, 0, 1, 0, 80}},
      {"address length 0", {2, 0}},
      {"stream id 0", {3, 8, 0, 0, 0, 0, 0, 0, 0, 0}},
      {"stream id 7 bytes", {3, 7, 0, 0, 0, 0, 0, 0, 1}},
      {"cluster empty", {4, 0}},
      {"cluster with a space", {4, 3, 'a', ' ', 'b'}},
      {"cluster with a control byte", {4, 2, 'a', 0x0a}},
      {"cluster with a high byte", {4, 2, 'a', 0x80}},
      {"cluster too long",
       [] {
         Buf b = {4, static_cast<uint8_t>(limits::kMaxClusterName + 1)};
         b.resize(b.size() + limits::kMaxClusterName + 1, 'x');
         return b;
       }()},
      {"authority empty", {5, 0}},
      {"authority with DEL", {5, 1, 0x7f}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_NE(why_of(c.b), "");
    EXPECT_FALSE(decode_origin(c.b, nullptr).has_value());  // `why` is optional
  }
  Buf over(limits::kMaxOriginPayload + 1, 0);
  EXPECT_EQ(why_of(over), "origin longer than its bound");
}

// --cluster-name (the broker refuses anything else at start, exit 2) and the
// AUTHORITY a wrapper's SNI becomes.
TEST(Origin, ClusterNameAndAuthorityBounds) {
  EXPECT_TRUE(valid_cluster_name("a"));
  EXPECT_TRUE(valid_cluster_name("prod-eu_1.gke/zone:b"));
  EXPECT_TRUE(valid_cluster_name(std::string(limits::kMaxClusterName, '~')));
  EXPECT_FALSE(valid_cluster_name(""));
  EXPECT_FALSE(valid_cluster_name(std::string(limits::kMaxClusterName + 1, 'x')));
  EXPECT_FALSE(valid_cluster_name("prod eu"));
  EXPECT_FALSE(valid_cluster_name("prod\teu"));
  EXPECT_FALSE(valid_cluster_name(std::string("a\0b", 3)));
  EXPECT_FALSE(
      valid_cluster_name("pr\xc3\xb6"
                         "d"));
  EXPECT_TRUE(valid_authority(std::string(limits::kMaxAuthority, 'a')));
  EXPECT_FALSE(valid_authority(std::string(limits::kMaxAuthority + 1, 'a')));
}

TEST(Origin, AddressesPrintForLogs) {
  EXPECT_EQ(v4(127, 0, 0, 2, 40000).str(), "127.0.0.2:40000");
  EXPECT_EQ(v6_last(1, 443).str(), "[0:0:0:0:0:0:0:1]:443");
  EXPECT_EQ(stream_uid_hex(0xabc), "0000000000000abc");
}

// Written by hand from the HAProxy PROXY protocol specification, section 2.2.
const Buf kSig = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

Buf cat(std::initializer_list<Buf> parts) {
  Buf out;
  for (const Buf& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}
Buf text(std::string_view s) {
  return Buf(s.begin(), s.end());
}

TEST(ProxyHeader, F45_Ipv4WithEveryTlvIsByteExact) {
  const Buf want = cat({kSig,
                        {0x21, 0x11, 0x00, 12 + 3 + 22 + 3 + 16 + 3 + 7},
                        {127, 0, 0, 2},  // source address
                        {127, 0, 0, 1},  // destination address
                        {0x9C, 0x40},    // source port 40000
                        {0x20, 0xFB},    // destination port 8443
                        {0x02, 0x00, 22},
                        text("openbao.cloudtaser.svc"),
                        {0x05, 0x00, 16},
                        text("0123456789abcdef"),
                        {0xE0, 0x00, 7},
                        text("prod-eu")});
  EXPECT_EQ(encode_proxy_v2(full_v4()), want);
  EXPECT_TRUE(proxy_v2_has_addresses(full_v4()));
}

TEST(ProxyHeader, F45_Ipv6WithoutAuthorityIsByteExact) {
  Origin o;
  o.source = v6_last(1, 50000);
  o.dest = v6_last(1, 8443);
  o.stream_id = 0xff;
  o.cluster = "c";
  Buf loopback6(15, 0);
  loopback6.push_back(1);
  const Buf want = cat({kSig,
                        {0x21, 0x21, 0x00, 36 + 3 + 16 + 3 + 1},
                        loopback6,
                        loopback6,
                        {0xC3, 0x50},  // 50000
                        {0x20, 0xFB},  // 8443
                        {0x05, 0x00, 16},
                        text("00000000000000ff"),
                        {0xE0, 0x00, 1},
                        text("c")});
  EXPECT_EQ(encode_proxy_v2(o), want);
}

TEST(ProxyHeader, F45_WithoutBothAddressesOfOneFamilyItIsLocal) {
  const Buf local = cat({kSig, {0x20, 0x00, 0x00, 0x00}});
  EXPECT_EQ(encode_proxy_v2(Origin{}), local);
  Origin only_source;
  only_source.source = v4(10, 0, 0, 1, 1);
  only_source.stream_id = 5;
  EXPECT_EQ(encode_proxy_v2(only_source), local);
  Origin mixed = full_v4();
  mixed.dest = v6_last(1, 8443);
  EXPECT_EQ(encode_proxy_v2(mixed), local);
  EXPECT_FALSE(proxy_v2_has_addresses(mixed));
}

TEST(ProxyHeader, LongestHeaderFitsItsBound) {
  Origin o;
  o.source = v6_last(1, 1);
  o.dest = v6_last(2, 2);
  o.stream_id = ~uint64_t{0};
  o.cluster = std::string(limits::kMaxClusterName, 'x');
  o.authority = std::string(limits::kMaxAuthority, 'a');
  EXPECT_EQ(encode_proxy_v2(o).size(), kMaxProxyHeader);
}

}  // namespace
}  // namespace ct
