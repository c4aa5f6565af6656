// What the beacon's parent tells its TLS process beside the listening socket
// (the LISTENER body, beacon/procs.h): the limits the operator set by flag.
// Sans-IO; one encoder, one decoder that consumes the body exactly and
// refuses a value outside its range (a bad internal message ends the process).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "beacon/pairing.h"
#include "shared/base/bytes.h"

namespace ct::beacon {

// The flags' ranges (docs/man/cloudtaser-beacon.8).
inline constexpr uint32_t kMaxTimeoutMs = 3600 * 1000;
inline constexpr uint32_t kMaxWaitingPerIdFlag = 4096;
inline constexpr uint32_t kMaxWaitingFlag = 65536;
inline constexpr uint32_t kMaxPerSourceFlag = 65536;
// Defaults: docs/beacon.md §3. A source (one NAT address) may hold a whole
// broker pool (64) and its pairs several times over.
inline constexpr uint32_t kDefaultConnsPerSource = 1024;
// Of those, waiting for a pairing: four clusters' full broker pools (16 x 4).
inline constexpr uint32_t kDefaultWaitingPerSource = 256;

struct Options {
  uint32_t pairing_timeout_ms = 10000;  // --pairing-timeout
  uint32_t keepalive_ms = 25000;        // --keepalive-interval
  uint32_t waiting_per_id = 64;         // --max-waiting-per-id (brokers, and bridges, each)
  uint32_t waiting_total = 4096;        // --max-waiting
  uint32_t per_source = kDefaultConnsPerSource;            // --max-conns-per-source
  uint32_t waiting_per_source = kDefaultWaitingPerSource;  // --max-waiting-per-source

  PairingLimits pairing() const;
};
inline constexpr uint32_t kOptionsSize = 24;

std::vector<uint8_t> encode_options(const Options& o);
std::optional<Options> decode_options(Bytes b);

}  // namespace ct::beacon
