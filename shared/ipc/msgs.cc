#include "shared/ipc/msgs.h"

#include "shared/wire/frame.h"
#include "shared/wire/limits.h"
#include "shared/wire/origin.h"

namespace ct {

namespace {
constexpr size_t kCap = limits::kMaxIpcMessage;
constexpr size_t kMaxPins = limits::kMaxPins;

void put_str16(ByteWriter& w, std::string_view s) {
  w.u16(static_cast<uint16_t>(s.size() > 0xffff ? 0xffff : s.size()));
  w.str(s.substr(0, 0xffff));
}
void put_str32(ByteWriter& w, std::string_view s) {
  w.u32(static_cast<uint32_t>(s.size()));
  w.str(s);
}
std::string get_str16(ByteReader& r) {
  return std::string(r.str(r.u16()));
}
std::string get_str32(ByteReader& r) {
  return std::string(r.str(r.u32()));
}
}  // namespace

std::vector<uint8_t> encode_settings(const ProcSettings& s) {
  std::vector<uint8_t> out;
  ByteWriter w(out, kCap);
  w.u8(s.log_level);
  w.u32(s.pending_timeout_ms);
  w.u32(s.drain_timeout_ms);
  put_str16(w, s.peer_name);
  put_str16(w, s.upstream);
  w.u8(s.drop_user ? 1 : 0);
  w.u32(s.uid);
  w.u32(s.gid);
  w.u32(s.stream_idle_timeout_ms);
  w.u32(s.memory_budget_mib);
  w.bytes(s.instance);
  w.u16(s.replicas);
  put_str16(w, s.vault_health_path);
  w.u32(s.vault_health_interval_ms);
  put_str16(w, s.vault_tls_name);
  w.u8(static_cast<uint8_t>(s.beacons.size()));
  for (const std::string& b : s.beacons) put_str16(w, b);
  w.bytes(s.rendezvous);
  w.u16(s.beacon_pool);
  put_str16(w, s.cluster_name);
  w.u8(s.proxy_protocol ? 1 : 0);
  return out;
}

std::optional<ProcSettings> decode_settings(Bytes b) {
  ByteReader r(b);
  ProcSettings s;
  s.log_level = r.u8();
  s.pending_timeout_ms = r.u32();
  s.drain_timeout_ms = r.u32();
  s.peer_name = get_str16(r);
  s.upstream = get_str16(r);
  const uint8_t drop = r.u8();
  s.uid = r.u32();
  s.gid = r.u32();
  s.stream_idle_timeout_ms = r.u32();
  s.memory_budget_mib = r.u32();
  r.copy_to(s.instance);
  s.replicas = r.u16();
  s.vault_health_path = get_str16(r);
  s.vault_health_interval_ms = r.u32();
  s.vault_tls_name = get_str16(r);
  const uint8_t nb = r.u8();
  if (nb > kMaxBeacons) return std::nullopt;
  for (uint8_t i = 0; i < nb && r.ok(); i++) s.beacons.push_back(get_str16(r));
  r.copy_to(s.rendezvous);
  s.beacon_pool = r.u16();
  if (s.beacon_pool > kMaxBeaconPool) return std::nullopt;
  s.cluster_name = get_str16(r);
  const uint8_t proxy = r.u8();
  if (!r.finish() || s.log_level > 3 || drop > 1 || proxy > 1) return std::nullopt;
  // It goes into every stream's origin as is (docs/protocol.md §3a).
  if (!s.cluster_name.empty() && !valid_cluster_name(s.cluster_name)) return std::nullopt;
  s.proxy_protocol = proxy == 1;
  // The path goes into a request line as is.
  if (!valid_health_path(s.vault_health_path)) return std::nullopt;
  s.drop_user = drop == 1;
  // Never "switch" to root.
  if (s.drop_user && (s.uid == 0 || s.gid == 0)) return std::nullopt;
  return s;
}

bool valid_health_path(const std::string& p) {
  if (p.empty() || p.size() > kMaxHealthPath || p[0] != '/') return false;
  for (const char c : p)
    if (c <= 0x20 || c >= 0x7f) return false;  // no space, no control byte: one request line
  return true;
}

std::vector<uint8_t> encode_material(const Material& m) {
  std::vector<uint8_t> out;
  ByteWriter w(out, kCap);
  put_str32(w, m.cert_pem);
  put_str32(w, m.key_pem);
  put_str32(w, m.ca_pem);
  w.u16(static_cast<uint16_t>(m.pins.size()));
  for (const Pin& p : m.pins) w.bytes(p);
  put_str32(w, m.service_cert_pem);
  put_str32(w, m.service_key_pem);
  put_str32(w, m.upstream_ca_pem);
  put_str32(w, m.beacon_ca_pem);
  w.u16(static_cast<uint16_t>(m.beacon_pins.size()));
  for (const Pin& p : m.beacon_pins) w.bytes(p);
  put_str32(w, m.beacon_cert_pem);
  put_str32(w, m.beacon_key_pem);
  if (!w.ok()) out.clear();
  return out;
}

std::optional<Material> decode_material(Bytes b) {
  ByteReader r(b);
  Material m;
  m.cert_pem = get_str32(r);
  m.key_pem = get_str32(r);
  m.ca_pem = get_str32(r);
  const uint16_t n = r.u16();
  if (n > kMaxPins) return std::nullopt;
  for (uint16_t i = 0; i < n && r.ok(); i++) {
    Pin p;
    r.copy_to(p);
    m.pins.push_back(p);
  }
  m.service_cert_pem = get_str32(r);
  m.service_key_pem = get_str32(r);
  m.upstream_ca_pem = get_str32(r);
  m.beacon_ca_pem = get_str32(r);
  const uint16_t nb = r.u16();
  if (nb > kMaxPins) return std::nullopt;
  for (uint16_t i = 0; i < nb && r.ok(); i++) {
    Pin p;
    r.copy_to(p);
    m.beacon_pins.push_back(p);
  }
  m.beacon_cert_pem = get_str32(r);
  m.beacon_key_pem = get_str32(r);
  if (!r.finish()) return std::nullopt;
  return m;
}

void wipe_material(Material& m) {
  wipe(m.cert_pem);
  wipe(m.key_pem);
  wipe(m.ca_pem);
  wipe(m.service_cert_pem);
  wipe(m.service_key_pem);
  wipe(m.upstream_ca_pem);
  wipe(m.beacon_ca_pem);
  wipe(m.beacon_cert_pem);
  wipe(m.beacon_key_pem);
  m.pins.clear();
  m.beacon_pins.clear();
}

std::vector<uint8_t> encode_status(const Status& s) {
  std::vector<uint8_t> out;
  ByteWriter w(out, kCap);
  w.u32(s.links_up);
  put_str16(w, s.text);
  w.u16(s.replicas_expected);
  w.u16(static_cast<uint16_t>(s.instances.size()));
  for (const std::string& i : s.instances) put_str16(w, i);
  w.u8(s.upstream);
  put_cert_state(w, s.certs);
  return out;
}

std::optional<Status> decode_status(Bytes b) {
  ByteReader r(b);
  Status s;
  s.links_up = r.u32();
  s.text = get_str16(r);
  s.replicas_expected = r.u16();
  const uint16_t n = r.u16();
  if (n > limits::kMaxReplicas) return std::nullopt;
  for (uint16_t i = 0; i < n && r.ok(); i++) s.instances.push_back(get_str16(r));
  s.upstream = r.u8();
  if (!get_cert_state(r, &s.certs) || !r.finish() || s.upstream >= kUpstreamStates)
    return std::nullopt;
  // Instance names become label values in the status file: 16 hex digits, nothing else.
  for (const std::string& i : s.instances)
    if (i.size() != 16 || i.find_first_not_of("0123456789abcdef") != std::string::npos)
      return std::nullopt;
  // The text goes into sd_notify, one assignment per line: a newline would
  // let a child send READY=1, STOPPING=1 or MAINPID= (a misbehaving child).
  for (const char c : s.text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return std::nullopt;
  return s;
}

}  // namespace ct
