// Beacon mode's shared secret and what both sides derive from it (docs/
// beacon.md §2): the rendezvous id a beacon pairs by, and the order in which
// a side tries several beacons. Here because both need SHA-256 (OpenSSL);
// the parents compute them, so the pairing key never reaches a TLS process
// and the beacon sees only the id.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "shared/base/result.h"
#include "shared/wire/rendezvous.h"

namespace ct {

// The smallest pairing key (decoded) a side accepts.
inline constexpr size_t kMinPairingKey = 32;
// A larger file is not a pairing key.
inline constexpr size_t kMaxPairingKeyFile = 4096;

// A pairing key file's content: one line of standard base64 (surrounding
// white space ignored) decoding to at least kMinPairingKey bytes. A failure
// names what is wrong, never the content.
Result<std::vector<uint8_t>> parse_pairing_key(std::string_view file);
// HMAC-SHA256(key, "cloudtaser beacon rendezvous v1").
rdv::RendezvousId rendezvous_id(Bytes key);
// "host[:port]" -> "host:port" with the host in lower case and 443 when no
// port is given ("[v6]:port" for an IPv6 literal). Fails as parse_host_port.
Result<std::string> normalise_beacon_address(std::string_view addr);
// Indexes of `normalised` (normalise_beacon_address) from the first beacon
// to try to the last: by weight, the first 8 bytes of SHA-256(id ‖ address)
// read big-endian, highest first (rendezvous hashing); ties by index.
std::vector<size_t> beacon_order(const rdv::RendezvousId& id,
                                 const std::vector<std::string>& normalised);
// The id as logs and metrics show it: its first 8 bytes in hex.
std::string rendezvous_name(const rdv::RendezvousId& id);

}  // namespace ct
