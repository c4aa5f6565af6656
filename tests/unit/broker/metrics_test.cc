// Broker metrics: handshake failures are classified by the reason an operator
// acts on, and the admission family renders every port and reason.
#include "broker/metrics.h"

#include <gtest/gtest.h>

namespace ct {
namespace {

TEST(HandshakeFailure, OpenSslReasonsMapToWhatAnOperatorActsOn) {
  EXPECT_EQ(classify_handshake_failure(
                "certificate verification failed: application verification failure"),
            HandshakeFailure::kPin);
  EXPECT_EQ(classify_handshake_failure(
                "certificate verification failed: unable to get local issuer certificate"),
            HandshakeFailure::kVerify);
  EXPECT_EQ(classify_handshake_failure("TLS handshake not completed within the deadline"),
            HandshakeFailure::kTimeout);
  EXPECT_EQ(classify_handshake_failure("peer closed the connection during the TLS handshake"),
            HandshakeFailure::kPeerClosed);
  EXPECT_EQ(classify_handshake_failure("read: Connection reset by peer"),
            HandshakeFailure::kPeerClosed);
  EXPECT_EQ(classify_handshake_failure(
                "TLS handshake failed: error:0A0000C7:SSL routines::peer did not return a "
                "certificate"),
            HandshakeFailure::kNoCertificate);
  EXPECT_EQ(classify_handshake_failure("TLS handshake failed: error:0A00009C:SSL "
                                       "routines::http request"),
            HandshakeFailure::kNotTls);
  EXPECT_EQ(classify_handshake_failure("TLS handshake failed: error:0A000102:SSL "
                                       "routines::unsupported protocol"),
            HandshakeFailure::kVersion);
  EXPECT_EQ(classify_handshake_failure("something new"), HandshakeFailure::kOther);
}

TEST(Metrics, AdmissionRefusalsRenderEveryPortAndReasonWithTheBridgeSamples) {
  ForwardCounters fwd;
  fwd.service_refusals[static_cast<size_t>(Refusal::kPerSource)] = 7;
  std::vector<MetricSample> tls = {
      {MetricId::kAdmission, static_cast<uint32_t>(Refusal::kEvicted), 3}};
  auto decoded = decode_metrics(encode_metrics(tls));
  ASSERT_TRUE(decoded);
  const std::string text = render_metrics(*decoded, fwd, "1.2.3");
  const std::string name = "cloudtaser_broker_admission_refusals_total";
  EXPECT_NE(text.find(name + "{port=\"bridge\",reason=\"evicted\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find(name + "{port=\"service\",reason=\"per_source\"} 7\n"), std::string::npos);
  EXPECT_NE(text.find(name + "{port=\"probe\",reason=\"paused\"} 0\n"), std::string::npos);
  EXPECT_EQ(text.find("# TYPE " + name + " counter\n"), text.rfind("# TYPE " + name));
}

}  // namespace
}  // namespace ct
