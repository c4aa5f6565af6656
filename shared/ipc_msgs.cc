#include "shared/ipc_msgs.h"

#include "shared/limits.h"
#include "shared/proc.h"

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
  if (!r.finish() || s.log_level > 3 || drop > 1) return std::nullopt;
  s.drop_user = drop == 1;
  // Never "switch" to root.
  if (s.drop_user && (s.uid == 0 || s.gid == 0)) return std::nullopt;
  return s;
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
  if (!r.finish()) return std::nullopt;
  return m;
}

void wipe_material(Material& m) {
  wipe(m.cert_pem);
  wipe(m.key_pem);
  wipe(m.ca_pem);
  wipe(m.service_cert_pem);
  wipe(m.service_key_pem);
  m.pins.clear();
}

std::vector<uint8_t> encode_status(const Status& s) {
  std::vector<uint8_t> out;
  ByteWriter w(out, kCap);
  w.u32(s.links_up);
  put_str16(w, s.text);
  return out;
}

std::optional<Status> decode_status(Bytes b) {
  ByteReader r(b);
  Status s;
  s.links_up = r.u32();
  s.text = get_str16(r);
  if (!r.finish()) return std::nullopt;
  // The text goes into sd_notify, one assignment per line: a newline would
  // let a child send READY=1, STOPPING=1 or MAINPID= (a misbehaving child).
  for (const char c : s.text)
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) return std::nullopt;
  return s;
}

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

std::optional<std::vector<uint8_t>> base64_decode(std::string_view s) {
  if (s.size() % 4 != 0) return std::nullopt;
  std::vector<uint8_t> out;
  for (size_t i = 0; i < s.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; j++) {
      const char c = s[i + static_cast<size_t>(j)];
      if (c == '=' && i + 4 == s.size() && j >= 2) {
        v[j] = 0;
        pad++;
        continue;
      }
      if (pad > 0) return std::nullopt;  // data after padding
      v[j] = b64_value(c);
      if (v[j] < 0) return std::nullopt;
    }
    const uint32_t triple = (static_cast<uint32_t>(v[0]) << 18) |
                            (static_cast<uint32_t>(v[1]) << 12) |
                            (static_cast<uint32_t>(v[2]) << 6) | static_cast<uint32_t>(v[3]);
    out.push_back(static_cast<uint8_t>(triple >> 16));
    if (pad < 2) out.push_back(static_cast<uint8_t>(triple >> 8));
    if (pad < 1) out.push_back(static_cast<uint8_t>(triple));
  }
  return out;
}

std::string base64_encode(Bytes b) {
  std::string out;
  for (size_t i = 0; i < b.size(); i += 3) {
    uint32_t v = uint32_t{b[i]} << 16;
    if (i + 1 < b.size()) v |= uint32_t{b[i + 1]} << 8;
    if (i + 2 < b.size()) v |= b[i + 2];
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += i + 1 < b.size() ? kB64[(v >> 6) & 63] : '=';
    out += i + 2 < b.size() ? kB64[v & 63] : '=';
  }
  return out;
}

std::optional<Pin> parse_pin(std::string_view s) {
  constexpr std::string_view kPrefix = "sha256//";
  if (s.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  auto raw = base64_decode(s.substr(kPrefix.size()));
  if (!raw || raw->size() != 32) return std::nullopt;
  Pin p;
  std::copy(raw->begin(), raw->end(), p.begin());
  return p;
}

std::string format_pin(const Pin& p) {
  return "sha256//" + base64_encode(p);
}

}  // namespace ct
