// Bodies of the control messages (channel.h). Each has one encoder and one
// decoder; decoders consume the body exactly or fail (a failure ends the
// receiving process, like any bad internal message).
#pragma once

#include <array>
#include <optional>
#include <string>
#include <vector>

#include "shared/base/bytes.h"
#include "shared/base/cert_report.h"
#include "shared/base/pin.h"
#include "shared/wire/limits.h"

namespace ct {

// Settings for a child process, sent once after it starts.
struct ProcSettings {
  uint8_t log_level = 2;
  uint32_t pending_timeout_ms = 10000;  // broker: wrappers held while no bridge
  uint32_t drain_timeout_ms = 30000;
  std::string peer_name;  // bridge TLS process: the broker name to verify
  std::string upstream;   // bridge forwarding process: numeric host:port of OpenBao
  // Children started as root switch to this user (resolved by the parent,
  // which may use NSS; children never do).
  bool drop_user = false;
  uint32_t uid = 0;
  uint32_t gid = 0;
  // Bridge TLS process: --stream-idle-timeout (0: none).
  uint32_t stream_idle_timeout_ms =
      static_cast<uint32_t>(std::chrono::milliseconds(limits::kDefaultStreamIdleTimeout).count());
  // TLS and forwarding processes (both daemons): --memory-budget, each.
  uint32_t memory_budget_mib = limits::kDefaultMemoryBudgetMiB;
  // Broker TLS process: this broker's id in every link's HELLO (the parent
  // draws it once, so a restarted TLS process keeps it), and --replicas,
  // told to bridges in STATUS (docs/protocol.md §2, §5a).
  std::array<uint8_t, 16> instance{};
  uint16_t replicas = 1;
  // Bridge TLS process: OpenBao's health endpoint (--vault-health-path: an
  // absolute path of printable ASCII, at most kMaxHealthPath bytes) polled
  // every vault_health_interval_ms (--vault-health-interval; 0: never).
  std::string vault_health_path = "/v1/sys/health";
  uint32_t vault_health_interval_ms = 5000;
  // Bridge TLS process, an https:// --vault-addr with --vault-ca: the host
  // named there (a DNS name or an IP), which OpenBao's listener certificate
  // must carry; the probe speaks TLS, verified against Material's
  // upstream_ca_pem. Empty: the probe speaks plain HTTP.
  std::string vault_tls_name;
  // Beacon mode (docs/beacon.md), both daemons' TLS processes: the beacons
  // (normalised host:port, at most kMaxBeacons; a bridge tries them in this
  // order, which the parent computed by rendezvous hashing; a broker waits at
  // every one), the rendezvous id from the pairing key (the key itself stays
  // in the parent), and how many connections a broker keeps waiting at each.
  std::vector<std::string> beacons;
  std::array<uint8_t, 32> rendezvous{};
  uint16_t beacon_pool = 0;
  // Broker forwarding process: --cluster-name (empty: none), carried in every
  // stream's origin (docs/protocol.md §3a; valid_cluster_name, checked).
  std::string cluster_name;
  // Bridge TLS and forwarding processes: --proxy-protocol, a PROXY v2 header
  // before the first byte of every connection to OpenBao.
  bool proxy_protocol = false;
};
inline constexpr size_t kMaxHealthPath = 256;
// --beacon-address at most this often; a broker's pool per beacon at most this.
inline constexpr size_t kMaxBeacons = 8;
inline constexpr uint16_t kMaxBeaconPool = 64;
// What the parent accepts as a health path (decode_settings checks it too).
bool valid_health_path(const std::string& p);
std::vector<uint8_t> encode_settings(const ProcSettings& s);
std::optional<ProcSettings> decode_settings(Bytes b);

// Certificate material for the TLS process: PEM text as read from the files,
// and the accepted peer pins (empty: chain verification only).
struct Material {
  std::string cert_pem;
  std::string key_pem;
  std::string ca_pem;
  std::vector<Pin> pins;
  // Bridge only, optional: the certificate and key wrappers' TLS ends in
  // (--service-cert/--service-key). Empty: streams pass through unchanged.
  std::string service_cert_pem;
  std::string service_key_pem;
  // Bridge only, optional: the CA that signed OpenBao's listener certificate
  // (--vault-ca), for the health probe's TLS to an https:// --vault-addr.
  std::string upstream_ca_pem;
  // Beacon mode (--beacon-ca, --beacon-pin): what the beacon's certificate
  // is checked against. Empty in reverse-connect mode.
  std::string beacon_ca_pem;
  std::vector<Pin> beacon_pins;
  // Beacon mode, optional (--beacon-cert, --beacon-key): the client
  // certificate a beacon run with --client-ca requires of both sides.
  std::string beacon_cert_pem;
  std::string beacon_key_pem;
};
std::vector<uint8_t> encode_material(const Material& m);
std::optional<Material> decode_material(Bytes b);
// Overwrites the PEM text (the key above all) before the memory is freed.
void wipe_material(Material& m);

struct Status {
  uint32_t links_up = 0;
  std::string text;
  // Bridge: how many broker replicas the brokers say they run (0: no link
  // yet), and the broker instances it holds a usable link to (instance_name:
  // 16 lowercase hex digits each, at most limits::kMaxReplicas of them).
  uint16_t replicas_expected = 0;
  std::vector<std::string> instances;
  // Bridge: its OpenBao's state as the health probe last saw it (an
  // UpstreamState, shared/wire/frame.h; below kUpstreamStates, checked).
  uint8_t upstream = 0;
  // Bridge: its certificates and the brokers' leaves on the kept links
  // (shared/base/cert_report.h), for the status file.
  CertState certs;
  // What the parent acts on (the text is for people).
  bool same_state(const Status& o) const {
    return links_up == o.links_up && replicas_expected == o.replicas_expected &&
           instances == o.instances && upstream == o.upstream && certs == o.certs;
  }
};
std::vector<uint8_t> encode_status(const Status& s);
// Refuses text with a control character (it ends up in sd_notify).
std::optional<Status> decode_status(Bytes b);

}  // namespace ct
