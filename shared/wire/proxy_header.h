// The PROXY protocol v2 header the bridge writes before the first byte of a
// connection to OpenBao with --proxy-protocol (docs/protocol.md §3a; the
// HAProxy specification, section 2.2). Sans-IO: an Origin in, bytes out.
#pragma once

#include <cstdint>
#include <vector>

#include "shared/wire/origin.h"

namespace ct {

inline constexpr uint8_t kPp2TypeAuthority = 0x02;
inline constexpr uint8_t kPp2TypeUniqueId = 0x05;
// The application range (0xE0 .. 0xEF): the connecting cluster's name.
inline constexpr uint8_t kPp2TypeCluster = 0xE0;
// Signature (12) + version/command, family, length (4) + two IPv6 addresses
// and ports (36) + TLVs: authority 3+253, unique id 3+16, cluster 3+63.
inline constexpr size_t kMaxProxyHeader = 16 + 36 + (3 + 253) + (3 + 16) + (3 + 63);

// PROXY (source, destination and TLVs from `o`) when the origin has a source
// and a destination of one family; otherwise LOCAL with no address and no
// TLV, which a server takes to mean "the connection's own addresses".
std::vector<uint8_t> encode_proxy_v2(const Origin& o);
// Whether encode_proxy_v2 writes PROXY (true) or LOCAL for this origin.
bool proxy_v2_has_addresses(const Origin& o);

}  // namespace ct
