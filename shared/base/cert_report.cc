#include "shared/base/cert_report.h"

#include <algorithm>
#include <ctime>

namespace ct {

int64_t unix_now() {
  return static_cast<int64_t>(::time(nullptr));
}

const char* cert_role_name(CertRole r) {
  switch (r) {
    case CertRole::kLeaf:
      return "leaf";
    case CertRole::kChain:
      return "chain";
    case CertRole::kCa:
      return "ca";
    case CertRole::kService:
      return "service";
    case CertRole::kVaultCa:
      return "vault_ca";
    case CertRole::kBeaconCa:
      return "beacon_ca";
    case CertRole::kBeaconClient:
      return "beacon_client";
    case CertRole::kPeer:
      return "peer";
  }
  return "unknown";
}

void put_cert_state(ByteWriter& w, const CertState& s) {
  const size_t n = std::min(s.certs.size(), kMaxCertReports);
  w.u32(s.pins);
  w.u16(static_cast<uint16_t>(n));
  for (size_t i = 0; i < n; i++) {
    const CertReport& c = s.certs[i];
    w.u8(static_cast<uint8_t>(c.role));
    w.u32(c.index);
    w.u64(static_cast<uint64_t>(c.not_after));
    w.u8(c.has_pin ? 1 : 0);
    if (c.has_pin) w.bytes(Bytes(c.pin.data(), c.pin.size()));
  }
  const size_t m = std::min(s.peer_pins.size(), kMaxCertReports);
  w.u16(static_cast<uint16_t>(m));
  for (size_t i = 0; i < m; i++) {
    const PeerPinsReport& p = s.peer_pins[i];
    w.u32(p.link);
    w.u8(p.current ? 1 : 0);
    w.u8(p.others);
  }
}

bool get_cert_state(ByteReader& r, CertState* out) {
  CertState s;
  s.pins = r.u32();
  const uint16_t n = r.u16();
  if (!r.ok() || n > kMaxCertReports) return false;
  for (uint16_t i = 0; i < n && r.ok(); i++) {
    CertReport c;
    const uint8_t role = r.u8();
    if (role >= kCertRoles) return false;
    c.role = static_cast<CertRole>(role);
    c.index = r.u32();
    c.not_after = static_cast<int64_t>(r.u64());
    const uint8_t has_pin = r.u8();
    if (has_pin > 1) return false;
    c.has_pin = has_pin == 1;
    if (c.has_pin) r.copy_to(c.pin);
    s.certs.push_back(c);
  }
  const uint16_t m = r.u16();
  if (!r.ok() || m > kMaxCertReports) return false;
  for (uint16_t i = 0; i < m && r.ok(); i++) {
    PeerPinsReport p;
    p.link = r.u32();
    const uint8_t current = r.u8();
    p.others = r.u8();
    // A peer sends at most kMaxPins (16): more is not a PINS we accepted.
    if (current > 1 || p.others > 16) return false;
    p.current = current == 1;
    s.peer_pins.push_back(p);
  }
  if (!r.ok()) return false;
  *out = std::move(s);
  return true;
}

std::string render_cert_state(const std::string& prefix, const CertState& s, bool with_pins) {
  std::string own, peers;
  for (const CertReport& c : s.certs) {
    const std::string pin = c.has_pin ? ",pin=\"" + format_pin(c.pin) + "\"" : "";
    if (c.role == CertRole::kPeer)
      peers += prefix + "_peer_certificate_not_after_timestamp_seconds{link=\"" +
               std::to_string(c.index) + "\"" + pin + "} " + std::to_string(c.not_after) + "\n";
    else
      own += prefix + "_certificate_not_after_timestamp_seconds{certificate=\"" +
             cert_role_name(c.role) + "\",index=\"" + std::to_string(c.index) + "\"" + pin + "} " +
             std::to_string(c.not_after) + "\n";
  }
  std::string out;
  if (!own.empty())
    out += "# HELP " + prefix +
           "_certificate_not_after_timestamp_seconds Unix time each certificate in use stops "
           "being valid (its notAfter), by role and position in its file; a leaf's pin is the "
           "SPKI pin of its key.\n"
           "# TYPE " +
           prefix + "_certificate_not_after_timestamp_seconds gauge\n" + own;
  if (!peers.empty())
    out += "# HELP " + prefix +
           "_peer_certificate_not_after_timestamp_seconds Unix time the peer's certificate "
           "on each live link stops being valid, with the SPKI pin of its key.\n"
           "# TYPE " +
           prefix + "_peer_certificate_not_after_timestamp_seconds gauge\n" + peers;
  if (!s.peer_pins.empty()) {
    out += "# HELP " + prefix +
           "_peer_pins Keys of ours the peer on each live link pins, as its PINS said (protocol "
           "version 4): key=\"current\" is 1 when it pins our key in service, key=\"other\" "
           "counts the other keys it pins (0: no next key of ours is published there). No "
           "sample for a peer that pins nothing or speaks an older version.\n"
           "# TYPE " +
           prefix + "_peer_pins gauge\n";
    for (const PeerPinsReport& p : s.peer_pins) {
      const std::string link = std::to_string(p.link);
      out += prefix + "_peer_pins{link=\"" + link + "\",key=\"current\"} " +
             (p.current ? "1" : "0") + "\n";
      out += prefix + "_peer_pins{link=\"" + link + "\",key=\"other\"} " +
             std::to_string(p.others) + "\n";
    }
  }
  if (!with_pins) return out;
  out += "# HELP " + prefix +
         "_pins_configured Peer SPKI pins configured (flags and pin file; 0: any certificate "
         "the CA signed).\n"
         "# TYPE " +
         prefix + "_pins_configured gauge\n" + prefix + "_pins_configured " +
         std::to_string(s.pins) + "\n";
  return out;
}

namespace {

bool same_cert(const CertReport& a, const CertReport& b) {
  if (a.role != b.role || a.not_after != b.not_after || a.has_pin != b.has_pin) return false;
  return a.has_pin ? a.pin == b.pin : a.index == b.index;
}

std::string utc(int64_t t) {
  const time_t tt = static_cast<time_t>(t);
  struct tm tm {};
  char buf[32] = "?";
  if (gmtime_r(&tt, &tm) != nullptr) strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

std::vector<std::string> ExpiryWarnings::due(const CertState& s, int64_t now) {
  constexpr int64_t kDay = 86400;
  std::vector<Seen> kept;
  std::vector<std::string> lines;
  for (const CertReport& c : s.certs) {
    if (std::any_of(kept.begin(), kept.end(), [&](const Seen& k) { return same_cert(k.key, c); }))
      continue;  // several peers with one certificate: one warning
    auto it = std::find_if(seen_.begin(), seen_.end(),
                           [&](const Seen& k) { return same_cert(k.key, c); });
    Seen seen = it != seen_.end() ? *it : Seen{c, INT64_MAX};
    // The nearest threshold crossed (0: expired).
    int64_t crossed = INT64_MAX;
    for (int64_t d : kThresholdDays)
      if (c.not_after - now <= d * kDay) crossed = d;
    if (c.not_after <= now) crossed = 0;
    if (crossed < seen.warned_days) {
      seen.warned_days = crossed;
      std::string what = std::string("certificate ") + cert_role_name(c.role);
      if (c.role == CertRole::kPeer)
        what = "peer certificate (link " + std::to_string(c.index) + ")";
      else if (c.index != 0)
        what += " #" + std::to_string(c.index);
      if (c.has_pin) what += " (pin " + format_pin(c.pin) + ")";
      const int64_t left = c.not_after - now;
      if (left <= 0)
        what +=
            " expired " + std::to_string(-left / kDay) + " day(s) ago (" + utc(c.not_after) + ")";
      else
        what += " expires in " + std::to_string(left / kDay) + " day(s) " +
                std::to_string(left % kDay / 3600) + " hour(s) (" + utc(c.not_after) +
                "), within " + std::to_string(crossed) + " day(s): renew it (docs/certificates.md)";
      lines.push_back(std::move(what));
    }
    kept.push_back(seen);
  }
  seen_ = std::move(kept);
  return lines;
}

std::optional<Pin> leaf_pin(const CertState& s) {
  for (const CertReport& c : s.certs)
    if (c.role == CertRole::kLeaf && c.index == 0 && c.has_pin) return c.pin;
  return std::nullopt;
}

}  // namespace ct
