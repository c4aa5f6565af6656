#include "shared/wire/origin.h"

#include <cstdio>

namespace ct {

namespace {

bool valid_addr(const OriginAddr& a) {
  return a.family == 4 || a.family == 6;
}

void put_addr(ByteWriter& w, OriginTlv t, const OriginAddr& a) {
  const size_t n = a.family == 4 ? 4 : 16;
  w.u8(static_cast<uint8_t>(t));
  w.u8(static_cast<uint8_t>(1 + n + 2));
  w.u8(a.family);
  w.bytes(Bytes(a.addr.data(), n));
  w.u16(a.port);
}

void put_text(ByteWriter& w, OriginTlv t, std::string_view s) {
  w.u8(static_cast<uint8_t>(t));
  w.u8(static_cast<uint8_t>(s.size()));
  w.str(s);
}

std::optional<OriginAddr> get_addr(Bytes v) {
  ByteReader rd(v);
  OriginAddr a;
  a.family = rd.u8();
  if (a.family == 4 && v.size() == 7) {
    rd.copy_to(std::span<uint8_t>(a.addr.data(), 4));
  } else if (a.family == 6 && v.size() == 19) {
    rd.copy_to(a.addr);
  } else {
    return std::nullopt;
  }
  a.port = rd.u16();
  if (!rd.finish()) return std::nullopt;
  return a;
}

}  // namespace

std::string OriginAddr::str() const {
  char buf[64];
  if (family == 4) {
    std::snprintf(buf, sizeof buf, "%u.%u.%u.%u:%u", addr[0], addr[1], addr[2], addr[3], port);
    return buf;
  }
  std::string s = "[";
  for (size_t i = 0; i < 16; i += 2) {
    std::snprintf(buf, sizeof buf, "%s%x", i == 0 ? "" : ":",
                  static_cast<unsigned>((addr[i] << 8) | addr[i + 1]));
    s += buf;
  }
  std::snprintf(buf, sizeof buf, "]:%u", port);
  return s + buf;
}

bool valid_origin_text(std::string_view s, size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s)
    if (c < 0x21 || c > 0x7e) return false;
  return true;
}

std::vector<uint8_t> encode_origin(const Origin& o) {
  std::vector<uint8_t> out;
  // One allocation per OPEN: the TLVs are written a field at a time, and a
  // vector grown from empty reallocates at 1, 2, 4, ... 128 bytes on the way
  // to a typical origin's 60-100.
  out.reserve(limits::kMaxOriginPayload);
  ByteWriter w(out, limits::kMaxOriginPayload);
  if (o.source && valid_addr(*o.source)) put_addr(w, OriginTlv::kSource, *o.source);
  if (o.dest && valid_addr(*o.dest)) put_addr(w, OriginTlv::kDest, *o.dest);
  if (o.stream_id != 0) {
    w.u8(static_cast<uint8_t>(OriginTlv::kStreamId));
    w.u8(8);
    w.u64(o.stream_id);
  }
  if (valid_cluster_name(o.cluster)) put_text(w, OriginTlv::kCluster, o.cluster);
  if (valid_authority(o.authority)) put_text(w, OriginTlv::kAuthority, o.authority);
  return out;  // within the cap by construction (limits.h kMaxOriginPayload)
}

std::optional<Origin> decode_origin(Bytes payload, std::string_view* why) {
  auto fail = [&](std::string_view w) -> std::optional<Origin> {
    if (why) *why = w;
    return std::nullopt;
  };
  if (payload.size() > limits::kMaxOriginPayload) return fail("origin longer than its bound");
  ByteReader rd(payload);
  Origin o;
  uint8_t last = 0;
  while (rd.remaining() > 0) {
    const uint8_t type = rd.u8();
    const uint8_t len = rd.u8();
    const Bytes v = rd.bytes(len);
    if (!rd.ok()) return fail("origin TLV runs past the end");
    if (type <= last) return fail("origin TLVs out of order or repeated");
    last = type;
    const std::string_view text(reinterpret_cast<const char*>(v.data()), v.size());
    switch (static_cast<OriginTlv>(type)) {
      case OriginTlv::kSource:
      case OriginTlv::kDest: {
        auto a = get_addr(v);
        if (!a) return fail("origin address malformed");
        (type == static_cast<uint8_t>(OriginTlv::kSource) ? o.source : o.dest) = a;
        break;
      }
      case OriginTlv::kStreamId: {
        ByteReader r(v);
        o.stream_id = r.u64();
        if (!r.finish() || o.stream_id == 0) return fail("origin stream id malformed");
        break;
      }
      case OriginTlv::kCluster:
        if (!valid_cluster_name(text)) return fail("origin cluster name malformed");
        o.cluster = text;
        break;
      case OriginTlv::kAuthority:
        if (!valid_authority(text)) return fail("origin authority malformed");
        o.authority = text;
        break;
      default:
        return fail("unknown origin TLV type");
    }
  }
  return o;
}

std::string stream_uid_hex(uint64_t uid) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(uid));
  return buf;
}

}  // namespace ct
