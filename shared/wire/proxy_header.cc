#include "shared/wire/proxy_header.h"

namespace ct {

namespace {
constexpr uint8_t kSignature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                    0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr uint8_t kLocal = 0x20;  // version 2, command LOCAL
constexpr uint8_t kProxy = 0x21;  // version 2, command PROXY
constexpr uint8_t kUnspec = 0x00, kTcp4 = 0x11, kTcp6 = 0x21;

void tlv(ByteWriter& w, uint8_t type, std::string_view v) {
  w.u8(type);
  w.u16(static_cast<uint16_t>(v.size()));
  w.str(v);
}
}  // namespace

bool proxy_v2_has_addresses(const Origin& o) {
  return o.source && o.dest && o.source->family == o.dest->family &&
         (o.source->family == 4 || o.source->family == 6);
}

std::vector<uint8_t> encode_proxy_v2(const Origin& o) {
  std::vector<uint8_t> out;
  ByteWriter w(out, kMaxProxyHeader);
  w.bytes(kSignature);
  if (!proxy_v2_has_addresses(o)) {
    w.u8(kLocal);
    w.u8(kUnspec);
    w.u16(0);
    return out;
  }
  const bool v4 = o.source->family == 4;
  const size_t alen = v4 ? 4 : 16;
  w.u8(kProxy);
  w.u8(v4 ? kTcp4 : kTcp6);
  const size_t len_at = w.size();
  w.u16(0);  // patched below
  w.bytes(Bytes(o.source->addr.data(), alen));
  w.bytes(Bytes(o.dest->addr.data(), alen));
  w.u16(o.source->port);
  w.u16(o.dest->port);
  if (valid_authority(o.authority)) tlv(w, kPp2TypeAuthority, o.authority);
  if (o.stream_id != 0) tlv(w, kPp2TypeUniqueId, stream_uid_hex(o.stream_id));
  if (valid_cluster_name(o.cluster)) tlv(w, kPp2TypeCluster, o.cluster);
  const size_t len = out.size() - len_at - 2;
  out[len_at] = static_cast<uint8_t>(len >> 8);
  out[len_at + 1] = static_cast<uint8_t>(len);
  return out;
}

}  // namespace ct
