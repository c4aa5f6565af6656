// The stream's origin (docs/protocol.md §3a): who opened a stream, carried in
// a version 3 OPEN from the broker's forwarding process to the bridge's, so
// that the bridge can tell OpenBao in a PROXY protocol v2 header
// (proxy_header.h). Sans-IO, like the frame codec.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/base/bytes.h"
#include "shared/wire/limits.h"

namespace ct {

// TLV types, in the order they must appear.
enum class OriginTlv : uint8_t {
  kSource = 1,
  kDest = 2,
  kStreamId = 3,
  kCluster = 4,
  kAuthority = 5,
};

// An IP address and port. family is 4 or 6; an IPv4 address sits in the
// first 4 bytes of addr.
struct OriginAddr {
  uint8_t family = 0;
  std::array<uint8_t, 16> addr{};
  uint16_t port = 0;
  bool operator==(const OriginAddr&) const = default;
  std::string str() const;  // 10.0.0.1:443, [::1]:443
};

struct Origin {
  std::optional<OriginAddr> source;  // the wrapper
  std::optional<OriginAddr> dest;    // the broker's service address it reached
  uint64_t stream_id = 0;            // 0: none
  std::string cluster;               // the broker's --cluster-name; empty: none
  std::string authority;             // the SNI the wrapper asked for; empty: none
  bool operator==(const Origin&) const = default;
  bool empty() const {
    return !source && !dest && stream_id == 0 && cluster.empty() && authority.empty();
  }
};

// --cluster-name and AUTHORITY: 1 .. max bytes of 0x21 .. 0x7e.
bool valid_origin_text(std::string_view s, size_t max);
inline bool valid_cluster_name(std::string_view s) {
  return valid_origin_text(s, limits::kMaxClusterName);
}
inline bool valid_authority(std::string_view s) {
  return valid_origin_text(s, limits::kMaxAuthority);
}

// The payload of an OPEN: at most limits::kMaxOriginPayload bytes, empty for
// an empty origin. A field that does not meet §3a (a name with a space, an
// address of another family) is left out rather than sent malformed: the
// authority comes from a wrapper's ClientHello.
std::vector<uint8_t> encode_origin(const Origin& o);
// Nullopt with *why set when the payload breaks §3a (a stream error).
std::optional<Origin> decode_origin(Bytes payload, std::string_view* why);

// How logs and the PROXY header print a stream's unique id: 16 hex digits.
std::string stream_uid_hex(uint64_t uid);

}  // namespace ct
