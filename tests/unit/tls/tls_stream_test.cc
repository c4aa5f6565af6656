// TlsStream as the bridge's health probe uses it: a client on memory BIOs
// (TlsContext::create_upstream, --vault-ca) that verifies OpenBao's chain
// and the name from --vault-addr, against a TlsStream server standing in for
// OpenBao's listener. Certificates come from the openssl command (a fresh
// CA per test); no socket anywhere, as in the TLS process.
#include "shared/tls/stream.h"

#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>

#include "shared/tls/context.h"
#include "tests/unit/tls/test_ca.h"

namespace ct {
namespace {

using test::TestCa;

// One probe's exchange: the client's ClientHello first, bytes shuttled both
// ways until neither side has more.
struct Pair {
  std::shared_ptr<TlsContext> client_ctx, server_ctx;
  std::unique_ptr<TlsStream> client, server;
  std::string client_got, server_got;

  Pair(const std::string& ca_pem, const std::pair<std::string, std::string>& server_id,
       const std::string& name) {
    auto c = TlsContext::create_upstream(ca_pem);
    EXPECT_TRUE(c.ok()) << (c ? "" : c.what());
    auto s = TlsContext::create_service(server_id.first, server_id.second);
    EXPECT_TRUE(s.ok()) << (s ? "" : s.what());
    client_ctx = std::move(c).value();
    server_ctx = std::move(s).value();
    client = std::make_unique<TlsStream>(client_ctx, client_ctx->get(), name);
    server = std::make_unique<TlsStream>(server_ctx, server_ctx->get());
  }

  static bool move(TlsStream& from, TlsStream& to) {
    const Bytes out = from.outer_pending();
    if (out.empty()) return false;
    to.put_outer(out);
    from.outer_sent(out.size());
    return true;
  }
  static void drain(TlsStream& t, std::string* got) {
    std::array<uint8_t, 512> buf;
    for (size_t n; (n = t.take_inner(buf)) > 0;) got->append(buf.begin(), buf.begin() + n);
  }
  void shuttle() {
    for (int round = 0; round < 20; round++) {
      const bool a = move(*client, *server);
      drain(*server, &server_got);
      const bool b = move(*server, *client);
      drain(*client, &client_got);
      if (!a && !b) return;
    }
  }
};

Bytes bytes_of(const std::string& s) {
  return Bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

TEST(TlsStreamClient, VerifiesOpenBaoByCaAndDnsNameAndCarriesTheProbe) {
  TestCa ca("vault ca");
  Pair p(ca.ca_pem(), ca.issue("openbao", "DNS:openbao.test"), "openbao.test");
  EXPECT_FALSE(p.client->outer_pending().empty());  // the ClientHello, before any input
  p.shuttle();
  ASSERT_TRUE(p.client->established()) << p.client->error();
  ASSERT_TRUE(p.server->established()) << p.server->error();
  ASSERT_TRUE(p.client->put_inner(bytes_of("GET /v1/sys/health HTTP/1.1\r\n\r\n")));
  p.shuttle();
  EXPECT_EQ(p.server_got, "GET /v1/sys/health HTTP/1.1\r\n\r\n");
  ASSERT_TRUE(p.server->put_inner(bytes_of("HTTP/1.1 503 Service Unavailable\r\n")));
  p.server->close_inner();
  p.shuttle();
  EXPECT_EQ(p.client_got, "HTTP/1.1 503 Service Unavailable\r\n");
  EXPECT_TRUE(p.client->inner_eof());
  EXPECT_FALSE(p.client->failed());
}

TEST(TlsStreamClient, VerifiesAnIpAddressAgainstTheIpSan) {
  TestCa ca("vault ca");
  Pair p(ca.ca_pem(), ca.issue("openbao", "IP:127.0.0.1"), "127.0.0.1");
  p.shuttle();
  EXPECT_TRUE(p.client->established()) << p.client->error();
}

TEST(TlsStreamClient, RefusesACertificateFromAnotherCa) {
  TestCa ca("vault ca"), other("other ca");
  Pair p(other.ca_pem(), ca.issue("openbao", "DNS:openbao.test"), "openbao.test");
  p.shuttle();
  EXPECT_FALSE(p.client->established());
  ASSERT_TRUE(p.client->failed());
  EXPECT_NE(p.client->error().find("OpenBao TLS handshake failed: certificate verify failed: "
                                   "unable to get local issuer certificate"),
            std::string::npos)
      << p.client->error();
  EXPECT_TRUE(p.client_got.empty());
}

TEST(TlsStreamClient, RefusesACertificateForAnotherName) {
  TestCa ca("vault ca");
  Pair p(ca.ca_pem(), ca.issue("openbao", "DNS:openbao.test,IP:127.0.0.1"), "other.test");
  p.shuttle();
  ASSERT_TRUE(p.client->failed());
  EXPECT_NE(p.client->error().find("hostname mismatch"), std::string::npos) << p.client->error();

  Pair q(ca.ca_pem(), ca.issue("openbao2", "DNS:openbao.test,IP:127.0.0.1"), "127.0.0.2");
  q.shuttle();
  ASSERT_TRUE(q.client->failed());
  EXPECT_NE(q.client->error().find("IP address mismatch"), std::string::npos) << q.client->error();
  // A DNS SAN never stands for an IP, nor the other way round.
  Pair r(ca.ca_pem(), ca.issue("openbao3", "DNS:127.0.0.1"), "127.0.0.1");
  r.shuttle();
  EXPECT_TRUE(r.client->failed());
}

TEST(TlsStreamClient, SendsNothingBeforeTheHandshakeIsVerified) {
  TestCa ca("vault ca"), other("other ca");
  Pair p(other.ca_pem(), ca.issue("openbao", "DNS:openbao.test"), "openbao.test");
  EXPECT_FALSE(p.client->put_inner(bytes_of("GET")));  // not now: no handshake yet
  p.shuttle();
  EXPECT_TRUE(p.client->failed());
  EXPECT_TRUE(p.server_got.empty());
}

TEST(TlsContextUpstream, RefusesACaFileWithoutACa) {
  TestCa ca("vault ca");
  const auto leaf = ca.issue("openbao", "DNS:openbao.test");
  auto not_ca = TlsContext::create_upstream(leaf.first);
  ASSERT_FALSE(not_ca.ok());
  EXPECT_NE(not_ca.what().find("not a CA"), std::string::npos) << not_ca.what();
  auto empty = TlsContext::create_upstream("no PEM here");
  ASSERT_FALSE(empty.ok());
  EXPECT_NE(empty.what().find("no PEM certificate"), std::string::npos) << empty.what();
  EXPECT_TRUE(TlsContext::create_upstream(ca.ca_pem()).ok());
}

}  // namespace
}  // namespace ct
