#include "beacon/metrics.h"

#include "shared/wire/rendezvous.h"

namespace ct::beacon {

namespace {
// The number of u64 fields encode_stats writes after its count.
constexpr uint16_t kFields = 1 + 1 + kRefusedKinds + 2 + 2 + 2 + kAnswerKinds + 1;
}  // namespace

const char* refused_name(Refused r) {
  switch (r) {
    case Refused::kHandshake:
      return "handshake";
    case Refused::kHandshakeTimeout:
      return "handshake_timeout";
    case Refused::kBadPreamble:
      return "bad_preamble";
    case Refused::kPreambleTimeout:
      return "preamble_timeout";
    case Refused::kSpokeEarly:
      return "spoke_before_paired";
    case Refused::kOverCapacity:
      return "over_capacity";
    case Refused::kPerSource:
      return "per_source";
    case Refused::kEvicted:
      return "evicted";
    case Refused::kNoSlot:
      return "no_slot";
    case Refused::kFdLimit:
      return "fd_limit";
    case Refused::kNoAlpn:
      return "no_alpn";
    case Refused::kShutdown:
      return "shutdown";
    case Refused::kNoPeer:
      return "no_peer";
    case Refused::kGone:
      return "closed_by_client";
  }
  return "other";
}

std::vector<uint8_t> encode_stats(const Stats& s) {
  std::vector<uint8_t> out;
  ByteWriter w(out, kMaxStatsSize);
  w.u16(kFields);
  w.u64(s.listening);
  w.u64(s.accepted);
  for (uint64_t v : s.refused) w.u64(v);
  w.u64(s.waiting_brokers);
  w.u64(s.waiting_bridges);
  w.u64(s.pairs_active);
  w.u64(s.pairs_total);
  w.u64(s.bytes_broker_to_bridge);
  w.u64(s.bytes_bridge_to_broker);
  for (uint64_t v : s.answers) w.u64(v);
  w.u64(s.log_dropped);
  put_cert_state(w, s.certs);
  return out;
}

std::optional<Stats> decode_stats(Bytes b) {
  ByteReader r(b);
  if (r.u16() != kFields) return std::nullopt;
  Stats s;
  s.listening = r.u64();
  s.accepted = r.u64();
  for (uint64_t& v : s.refused) v = r.u64();
  s.waiting_brokers = r.u64();
  s.waiting_bridges = r.u64();
  s.pairs_active = r.u64();
  s.pairs_total = r.u64();
  s.bytes_broker_to_bridge = r.u64();
  s.bytes_bridge_to_broker = r.u64();
  for (uint64_t& v : s.answers) v = r.u64();
  s.log_dropped = r.u64();
  if (!get_cert_state(r, &s.certs) || !r.finish() || s.listening > 1) return std::nullopt;
  return s;
}

std::string render_metrics(const Stats& s, const ForwardFigures& f, const char* version) {
  std::string out;
  auto family = [&](const char* name, const char* type, const char* help) {
    out += std::string("# HELP ") + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
  };
  auto sample = [&](const char* name, const std::string& labels, uint64_t v) {
    out += name;
    if (!labels.empty()) out += "{" + labels + "}";
    out += " " + std::to_string(v) + "\n";
  };
  family("cloudtaser_beacon_build_info", "gauge", "Build information.");
  sample("cloudtaser_beacon_build_info", std::string("version=\"") + version + "\"", 1);
  family("cloudtaser_beacon_draining", "gauge", "1 while the beacon drains after SIGTERM.");
  sample("cloudtaser_beacon_draining", "", f.draining ? 1 : 0);
  family("cloudtaser_beacon_listening", "gauge",
         "1 while the TLS process has its certificate in service and accepts connections.");
  sample("cloudtaser_beacon_listening", "", s.listening);
  family("cloudtaser_beacon_connections_accepted_total", "counter",
         "Connections accepted on --listen.");
  sample("cloudtaser_beacon_connections_accepted_total", "", s.accepted);
  family("cloudtaser_beacon_connections_refused_total", "counter",
         "Connections refused or closed before they were paired, by reason.");
  for (size_t i = 0; i < kRefusedKinds; i++)
    sample("cloudtaser_beacon_connections_refused_total",
           std::string("reason=\"") + refused_name(static_cast<Refused>(i)) + "\"", s.refused[i]);
  family("cloudtaser_beacon_waiting", "gauge", "Connections waiting to be paired, by role.");
  sample("cloudtaser_beacon_waiting", "role=\"broker\"", s.waiting_brokers);
  sample("cloudtaser_beacon_waiting", "role=\"bridge\"", s.waiting_bridges);
  family("cloudtaser_beacon_pairs_active", "gauge", "Pairs being relayed.");
  sample("cloudtaser_beacon_pairs_active", "", s.pairs_active);
  family("cloudtaser_beacon_pairs_total", "counter", "Pairs made since start.");
  sample("cloudtaser_beacon_pairs_total", "", s.pairs_total);
  family("cloudtaser_beacon_bytes_relayed_total", "counter",
         "Bytes of the inner sessions relayed, by direction.");
  sample("cloudtaser_beacon_bytes_relayed_total", "direction=\"broker_to_bridge\"",
         s.bytes_broker_to_bridge);
  sample("cloudtaser_beacon_bytes_relayed_total", "direction=\"bridge_to_broker\"",
         s.bytes_bridge_to_broker);
  family("cloudtaser_beacon_answers_total", "counter", "Rendezvous answers sent, by code.");
  for (size_t i = 0; i < kAnswerKinds; i++)
    sample("cloudtaser_beacon_answers_total",
           std::string("code=\"") + rdv::answer_name(static_cast<rdv::Answer>(i)) + "\"",
           s.answers[i]);
  family("cloudtaser_beacon_metrics_refused_total", "counter",
         "Connections to --metrics-listen refused, evicted or shed by its admission pools.");
  sample("cloudtaser_beacon_metrics_refused_total", "", f.http_refused);
  family("cloudtaser_beacon_log_lines_dropped_total", "counter",
         "Log lines dropped because stderr would have blocked, by process.");
  sample("cloudtaser_beacon_log_lines_dropped_total", "process=\"tls\"", s.log_dropped);
  sample("cloudtaser_beacon_log_lines_dropped_total", "process=\"forward\"", f.log_dropped);
  out += render_cert_state("cloudtaser_beacon", s.certs,
                           /*with_pins=*/false);  // a blind relay pins nothing
  return out;
}

}  // namespace ct::beacon
