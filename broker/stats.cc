#include "broker/stats.h"

#include <utility>

namespace ct::broker {

std::vector<MetricSample> BrokerStats::samples(const Live& live) const {
  std::vector<MetricSample> m;
  m.push_back({MetricId::kBridgesConnected, 0, live.bridges_up});
  m.push_back({MetricId::kStreamsOpen, 0, live.streams_open});
  m.push_back({MetricId::kStreamsTotal, 0, streams_total_});
  m.push_back({MetricId::kBytesToBridge, 0, bytes_to_bridge_ + live.bytes_to_bridge});
  m.push_back({MetricId::kBytesFromBridge, 0, bytes_from_bridge_ + live.bytes_from_bridge});
  m.push_back({MetricId::kWrappersPending, 0, live.wrappers_pending});
  m.push_back({MetricId::kPendingTimeouts, 0, pending_timeouts_});
  for (auto& [k, v] : handshake_failures_) m.push_back({MetricId::kHandshakeFailures, k, v});
  for (auto& [k, v] : resets_) m.push_back({MetricId::kResets, k, v});
  for (auto& [k, v] : link_errors_) m.push_back({MetricId::kLinkErrors, k, v});
  for (size_t r = 0; r < kRefusalKinds; r++)
    if (live.admission[r] != 0)
      m.push_back({MetricId::kAdmission, static_cast<uint32_t>(r), live.admission[r]});
  m.push_back({MetricId::kLogDropped, static_cast<uint32_t>(LogProcess::kTls), live.log_dropped});
  // Every state, 0 included: an alert on sealed > 0 needs the series to exist.
  for (uint32_t st = 0; st < kUpstreamStates; st++)
    m.push_back({MetricId::kBridgesByUpstream, st, live.by_upstream[st]});
  for (size_t b = 0; b < live.beacon_waiting.size(); b++) {
    const auto i = static_cast<uint32_t>(b);
    m.push_back({MetricId::kBeaconWaiting, i, live.beacon_waiting[b]});
    auto p = beacon_paired_.find(i), l = beacon_lost_.find(i);
    m.push_back({MetricId::kBeaconPaired, i, p == beacon_paired_.end() ? 0 : p->second});
    m.push_back({MetricId::kBeaconLost, i, l == beacon_lost_.end() ? 0 : l->second});
  }
  return m;
}

std::optional<std::vector<uint8_t>> BrokerStats::changed_body(const Live& live) {
  auto body = encode_metrics(samples(live), live.certs);
  if (body == last_body_) return std::nullopt;
  last_body_ = body;
  return body;
}

}  // namespace ct::broker
