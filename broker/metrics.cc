#include "broker/metrics.h"

#include <algorithm>
#include <array>
#include <map>

#include "shared/wire/frame.h"
#include "shared/wire/limits.h"

namespace ct {

namespace {

struct Family {
  MetricId id;
  const char* name;
  const char* type;
  const char* help;
  const char* label;  // label name, or nullptr
};

constexpr Family kFamilies[] = {
    {MetricId::kBridgesConnected, "cloudtaser_broker_bridges_connected", "gauge",
     "Bridges with an established link.", nullptr},
    {MetricId::kStreamsOpen, "cloudtaser_broker_streams_open", "gauge",
     "Wrapper streams currently open.", nullptr},
    {MetricId::kStreamsTotal, "cloudtaser_broker_streams_total", "counter",
     "Wrapper streams opened since start.", nullptr},
    {MetricId::kBytesToBridge, "cloudtaser_broker_bytes_to_bridge_total", "counter",
     "Stream payload bytes sent towards bridges.", nullptr},
    {MetricId::kBytesFromBridge, "cloudtaser_broker_bytes_from_bridge_total", "counter",
     "Stream payload bytes received from bridges.", nullptr},
    {MetricId::kHandshakeFailures, "cloudtaser_broker_handshake_failures_total", "counter",
     "Bridge TLS handshakes that failed, by reason.", "reason"},
    {MetricId::kWrappersPending, "cloudtaser_broker_wrappers_pending", "gauge",
     "Wrappers waiting for a bridge to connect.", nullptr},
    {MetricId::kPendingTimeouts, "cloudtaser_broker_pending_timeouts_total", "counter",
     "Wrappers closed because no bridge connected within the pending timeout.", nullptr},
    {MetricId::kResets, "cloudtaser_broker_stream_resets_total", "counter",
     "Streams reset, by reason code.", "reason"},
    {MetricId::kLinkErrors, "cloudtaser_broker_link_errors_total", "counter",
     "Bridge links closed by a connection error, by code.", "code"},
    // Rendered apart (two labels: port and reason), see render_admission().
    {MetricId::kAdmission, "cloudtaser_broker_admission_refusals_total", "counter",
     "Connections refused, evicted or shed by a listening port's admission pools, and "
     "times a listener paused, by port and reason.",
     nullptr},
    {MetricId::kLogDropped, "cloudtaser_broker_log_lines_dropped_total", "counter",
     "Log lines dropped because stderr would have blocked, by process.", "process"},
    {MetricId::kBridgesByUpstream, "cloudtaser_broker_bridges_by_upstream", "gauge",
     "Bridges with an established link, by the state they report of their OpenBao (new streams "
     "go to active, then standby, then unknown; never sealed, uninitialized or unreachable).",
     "state"},
    {MetricId::kBeaconWaiting, "cloudtaser_broker_beacon_waiting", "gauge",
     "Beacon mode: connections waiting at each beacon for a bridge (--beacon-pool each).",
     "beacon"},
    {MetricId::kBeaconPaired, "cloudtaser_broker_beacon_paired_total", "counter",
     "Beacon mode: waiting connections each beacon paired with a bridge.", "beacon"},
    {MetricId::kBeaconLost, "cloudtaser_broker_beacon_failures_total", "counter",
     "Beacon mode: dials to each beacon that failed, and waiting connections that ended "
     "before a pairing.",
     "beacon"},
};

const Family* family(MetricId id) {
  for (const Family& f : kFamilies)
    if (f.id == id) return &f;
  return nullptr;
}

std::string label_value(MetricId id, uint32_t label, const ForwardCounters& fwd) {
  if (id == MetricId::kBeaconWaiting || id == MetricId::kBeaconPaired ||
      id == MetricId::kBeaconLost)
    return label < fwd.beacons.size() ? fwd.beacons[label] : std::to_string(label);
  if (id == MetricId::kLogDropped)
    return static_cast<LogProcess>(label) == LogProcess::kTls ? "tls" : "forward";
  if (id == MetricId::kBridgesByUpstream)
    return label < kUpstreamStates
               ? std::string(upstream_state_name(static_cast<UpstreamState>(label)))
               : std::to_string(label);
  if (id == MetricId::kHandshakeFailures) {
    switch (static_cast<HandshakeFailure>(label)) {
      case HandshakeFailure::kVerify:
        return "verify";
      case HandshakeFailure::kPin:
        return "pin";
      case HandshakeFailure::kTimeout:
        return "timeout";
      case HandshakeFailure::kPeerClosed:
        return "peer_closed";
      case HandshakeFailure::kOther:
        return "other";
      case HandshakeFailure::kNoCertificate:
        return "no_certificate";
      case HandshakeFailure::kNotTls:
        return "not_tls";
      case HandshakeFailure::kVersion:
        return "version";
    }
    return "other";
  }
  const std::string_view n = code_name(static_cast<Code>(label));
  return n == "UNKNOWN" ? std::to_string(label) : std::string(n);
}

constexpr size_t kMaxSamples = 256;

void render_admission(std::string& out, const std::vector<MetricSample>& tls,
                      const ForwardCounters& fwd) {
  const Family& f = *family(MetricId::kAdmission);
  out += std::string("# HELP ") + f.name + " " + f.help + "\n";
  out += std::string("# TYPE ") + f.name + " " + f.type + "\n";
  std::array<uint64_t, kRefusalKinds> bridge{};
  for (const MetricSample& s : tls)
    if (s.id == MetricId::kAdmission && s.label < kRefusalKinds) bridge[s.label] += s.value;
  const std::pair<const char*, const std::array<uint64_t, kRefusalKinds>*> ports[] = {
      {"bridge", &bridge},
      {"service", &fwd.service_refusals},
      {"metrics", &fwd.metrics_refusals},
      {"probe", &fwd.probe_refusals}};
  for (const auto& [port, counts] : ports)
    for (size_t r = 0; r < kRefusalKinds; r++)
      out += std::string(f.name) + "{port=\"" + port + "\",reason=\"" +
             refusal_name(static_cast<Refusal>(r)) + "\"} " + std::to_string((*counts)[r]) + "\n";
}

}  // namespace

std::vector<uint8_t> encode_metrics(const std::vector<MetricSample>& m, const CertState& certs) {
  std::vector<uint8_t> out;
  ByteWriter w(out, limits::kMaxIpcMessage);
  w.u16(static_cast<uint16_t>(std::min(m.size(), kMaxSamples)));
  for (size_t i = 0; i < m.size() && i < kMaxSamples; i++) {
    w.u16(static_cast<uint16_t>(m[i].id));
    w.u32(m[i].label);
    w.u64(m[i].value);
  }
  put_cert_state(w, certs);
  return out;
}

std::optional<std::vector<MetricSample>> decode_metrics(Bytes b, CertState* certs) {
  ByteReader r(b);
  const uint16_t n = r.u16();
  if (n > kMaxSamples) return std::nullopt;
  std::vector<MetricSample> out;
  for (uint16_t i = 0; i < n && r.ok(); i++) {
    MetricSample s;
    s.id = static_cast<MetricId>(r.u16());
    s.label = r.u32();
    s.value = r.u64();
    if (family(s.id) == nullptr) return std::nullopt;
    out.push_back(s);
  }
  CertState cs;
  if (!get_cert_state(r, &cs) || !r.finish()) return std::nullopt;
  if (certs != nullptr) *certs = std::move(cs);
  return out;
}

std::string render_metrics(const std::vector<MetricSample>& tls, const ForwardCounters& fwd,
                           const char* version, const CertState& certs) {
  std::string out;
  out += "# HELP cloudtaser_broker_build_info Build information.\n";
  out += "# TYPE cloudtaser_broker_build_info gauge\n";
  out += std::string("cloudtaser_broker_build_info{version=\"") + version + "\"} 1\n";
  out += "# HELP cloudtaser_broker_wrapper_connections_total Wrapper connections accepted.\n";
  out += "# TYPE cloudtaser_broker_wrapper_connections_total counter\n";
  out += "cloudtaser_broker_wrapper_connections_total " +
         std::to_string(fwd.wrapper_connections_total) + "\n";
  out += "# HELP cloudtaser_broker_draining 1 while the broker drains after SIGTERM.\n";
  out += "# TYPE cloudtaser_broker_draining gauge\n";
  out += std::string("cloudtaser_broker_draining ") + (fwd.draining ? "1" : "0") + "\n";
  for (const Family& f : kFamilies) {
    if (f.id == MetricId::kAdmission) {
      render_admission(out, tls, fwd);
      continue;
    }
    std::map<std::string, uint64_t> values;
    for (const MetricSample& s : tls)
      if (s.id == f.id) values[f.label ? label_value(f.id, s.label, fwd) : ""] += s.value;
    if (values.empty() && f.label != nullptr) continue;
    out += std::string("# HELP ") + f.name + " " + f.help + "\n";
    out += std::string("# TYPE ") + f.name + " " + f.type + "\n";
    if (values.empty()) values[""] = 0;
    for (const auto& [label, v] : values) {
      out += f.name;
      if (f.label != nullptr) out += std::string("{") + f.label + "=\"" + label + "\"}";
      out += " " + std::to_string(v) + "\n";
    }
  }
  out += render_cert_state("cloudtaser_broker", certs);
  return out;
}

HandshakeFailure classify_handshake_failure(const std::string& why) {
  if (why.find("application verification failure") != std::string::npos)
    return HandshakeFailure::kPin;
  if (why.find("certificate verification failed") != std::string::npos)
    return HandshakeFailure::kVerify;
  if (why.find("within the deadline") != std::string::npos) return HandshakeFailure::kTimeout;
  if (why.find("peer closed") != std::string::npos ||
      why.find("Connection reset") != std::string::npos)
    return HandshakeFailure::kPeerClosed;
  // OpenSSL 3's reason strings for the cases an operator must tell apart.
  if (why.find("peer did not return a certificate") != std::string::npos)
    return HandshakeFailure::kNoCertificate;
  if (why.find("unsupported protocol") != std::string::npos ||
      why.find("no protocols available") != std::string::npos)
    return HandshakeFailure::kVersion;
  if (why.find("http request") != std::string::npos ||
      why.find("wrong version number") != std::string::npos ||
      why.find("packet length too long") != std::string::npos ||
      why.find("record layer failure") != std::string::npos)
    return HandshakeFailure::kNotTls;
  return HandshakeFailure::kOther;
}

}  // namespace ct
