// Broker metrics: a fixed table of metric families, the counters the TLS
// process keeps, their encoding for the STATS control message (TLS process ->
// parent -> forwarding process, which serves /metrics), and the Prometheus
// text rendering. Only counts and states; never payload.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shared/base/bytes.h"
#include "shared/base/cert_report.h"
#include "shared/os/admission.h"

namespace ct {

enum class MetricId : uint16_t {
  kBridgesConnected = 1,   // gauge
  kStreamsOpen = 2,        // gauge
  kStreamsTotal = 3,       // counter
  kBytesToBridge = 4,      // counter (stream payload towards the bridges)
  kBytesFromBridge = 5,    // counter
  kHandshakeFailures = 6,  // counter, label = HandshakeFailure
  kWrappersPending = 7,    // gauge
  kPendingTimeouts = 8,    // counter
  kResets = 9,             // counter, label = reset code (docs/protocol.md §7)
  kLinkErrors = 10,        // counter, label = error code
  kAdmission = 11,         // counter, label = Refusal (shared/os/admission.h), bridge port
  kLogDropped = 12,        // counter, label = LogProcess
  // gauge, label = UpstreamState (shared/wire/frame.h): linked bridges by their OpenBao's state
  kBridgesByUpstream = 13,
  // Beacon mode, label = the beacon's position in --beacon-address order:
  kBeaconWaiting = 14,  // gauge: connections waiting there for a bridge
  kBeaconPaired = 15,   // counter: waiting connections it paired with a bridge
  kBeaconLost = 16,     // counter: dials that failed and waiting connections that ended unpaired
};

// Whose log lines were dropped (stderr full): each process counts its own.
enum class LogProcess : uint32_t { kTls = 0, kForward = 1 };

enum class HandshakeFailure : uint32_t {
  kVerify = 0,
  kPin = 1,
  kTimeout = 2,
  kPeerClosed = 3,
  kOther = 4,
  kNoCertificate = 5,  // the peer sent no client certificate
  kNotTls = 6,         // the first bytes were not a TLS record (HTTP, scanners)
  kVersion = 7,        // no TLS 1.3 offered
};

struct MetricSample {
  MetricId id;
  uint32_t label = 0;
  uint64_t value = 0;
};

// The STATS body: the samples, then the certificates (cert_report.h). The
// decoder fills *certs when given one.
std::vector<uint8_t> encode_metrics(const std::vector<MetricSample>& m,
                                    const CertState& certs = {});
std::optional<std::vector<MetricSample>> decode_metrics(Bytes b, CertState* certs = nullptr);

// Prometheus text exposition of the samples plus what the forwarding process
// knows itself.
struct ForwardCounters {
  uint64_t wrapper_connections_total = 0;
  uint64_t wrappers_open = 0;
  bool draining = false;
  // Admission refusals by Refusal, per port of the forwarding process.
  std::array<uint64_t, kRefusalKinds> service_refusals{}, metrics_refusals{}, probe_refusals{};
  // Beacon mode: the beacons (settings), which name the beacon metrics' label.
  std::vector<std::string> beacons;
};
std::string render_metrics(const std::vector<MetricSample>& tls, const ForwardCounters& fwd,
                           const char* version, const CertState& certs = {});

// Classifies a handshake failure from the TLS layer's message.
HandshakeFailure classify_handshake_failure(const std::string& why);

}  // namespace ct
