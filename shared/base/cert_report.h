// What the metrics say of the certificates a daemon holds (issue 15): each
// one's not-after time and, for a leaf, the SPKI pin of its key; the peers'
// leaves on the live links; how many pins are configured. The TLS process
// (which parses the certificates) builds a CertState, sends it with its
// counters (the broker's STATS, the bridge's STATUS, the beacon's STATS), and
// the process that renders /metrics or the status file turns it into text
// here. ExpiryWarnings decides which log warnings are due (30, 7, 1 days).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shared/base/bytes.h"
#include "shared/base/pin.h"

namespace ct {

// Which certificate: the `certificate` label of the not-after metric.
enum class CertRole : uint8_t {
  kLeaf = 0,          // our own certificate (--cert / --client-cert)
  kChain = 1,         // an intermediate sent after our leaf
  kCa = 2,            // a trust anchor of the link (--ca-cert)
  kService = 3,       // the bridge's --service-cert
  kVaultCa = 4,       // the bridge's --vault-ca
  kBeaconCa = 5,      // beacon mode: --beacon-ca
  kBeaconClient = 6,  // beacon mode: --beacon-cert
  kPeer = 7,          // the peer's leaf on a live link (index: the link's id)
};
inline constexpr uint8_t kCertRoles = 8;
const char* cert_role_name(CertRole r);

struct CertReport {
  CertRole role = CertRole::kLeaf;
  uint32_t index = 0;     // the n-th certificate of its file; for kPeer the link id
  int64_t not_after = 0;  // unix seconds
  bool has_pin = false;   // leaves: the pin of the key
  Pin pin{};
  bool operator==(const CertReport&) const = default;
};

// Bounded: a CA file holds a few anchors; at most kMaxBridgeLinks peers.
inline constexpr size_t kMaxCertReports = 256;

// What the peer on one live link pins of our keys (its PINS, protocol
// version 4, docs/protocol.md §5b); only for a peer that sent PINS.
struct PeerPinsReport {
  uint32_t link = 0;
  bool current = false;  // it pins our key in service
  uint8_t others = 0;    // how many other keys it pins (a next key published: >= 1)
  bool operator==(const PeerPinsReport&) const = default;
};

struct CertState {
  std::vector<CertReport> certs;
  uint32_t pins = 0;                      // the peer pins configured (0: chain verification only)
  std::vector<PeerPinsReport> peer_pins;  // at most kMaxCertReports
  bool operator==(const CertState&) const = default;
};

// The pin of our own key in `s` (its leaf); none when `s` has no leaf.
std::optional<Pin> leaf_pin(const CertState& s);

// Appends the state (at most kMaxCertReports certificates, the rest
// dropped); reads it back, false on anything malformed (a bad role, too many).
void put_cert_state(ByteWriter& w, const CertState& s);
bool get_cert_state(ByteReader& r, CertState* out);

// Prometheus text for the state: <prefix>_certificate_not_after_timestamp_seconds
// {certificate,index[,pin]}, <prefix>_peer_certificate_not_after_timestamp_seconds
// {link,pin}, <prefix>_peer_pins{link,key="current"|"other"} and, `with_pins`,
// <prefix>_pins_configured. `prefix`:
// "cloudtaser_broker" etc.
std::string render_cert_state(const std::string& prefix, const CertState& s, bool with_pins = true);

// The wall clock in unix seconds: a certificate's validity is wall-clock time
// (the only reader of it besides the logs' timestamps).
int64_t unix_now();

// Which expiry warnings are due: each certificate is warned about once per
// threshold it crosses (30, 7, 1 days before its not-after; a certificate
// already past several is warned about once, for the nearest), and again only
// when it is replaced. A certificate is known by its role and pin (leaves,
// peers: so a bridge that reconnects is not warned about again) or role and
// index, and its not-after (a renewal is a new certificate).
class ExpiryWarnings {
 public:
  inline static constexpr int64_t kThresholdDays[] = {30, 7, 1};
  // The lines to log now, e.g. "certificate leaf (pin sha256//...) expires
  // in 6 days (2026-...Z)" or "... expired 2 days ago". Certificates no
  // longer in `s` are forgotten.
  std::vector<std::string> due(const CertState& s, int64_t now);

 private:
  struct Seen {
    CertReport key;
    int64_t warned_days;  // the smallest threshold warned about
  };
  std::vector<Seen> seen_;
};

}  // namespace ct
