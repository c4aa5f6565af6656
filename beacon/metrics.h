// The beacon's figures: what its TLS process counts, their encoding for the
// STATS control message (TLS process -> parent -> forwarding process, which
// serves /metrics), and the Prometheus text. Counts and states only: never
// an id, an address or a byte of what is relayed.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shared/base/bytes.h"
#include "shared/base/cert_report.h"

namespace ct::beacon {

// Why a connection was turned away or closed before it was paired. The order
// is the label order in metrics; append only.
enum class Refused : uint8_t {
  kHandshake = 0,         // the outer TLS handshake failed (incl. no ALPN, no client certificate)
  kHandshakeTimeout = 1,  // not done within 10 s of accept
  kBadPreamble = 2,       // malformed preamble (BAD_PREAMBLE)
  kPreambleTimeout = 3,   // preamble not complete within 5 s (BAD_PREAMBLE)
  kSpokeEarly = 4,        // a byte after the preamble, before PAIRED (BAD_PREAMBLE)
  kOverCapacity = 5,      // a per-id or total waiting cap (OVER_CAPACITY)
  kPerSource = 6,         // its source address already holds its cap (closed at accept)
  kEvicted = 7,           // the oldest handshake, evicted for a newcomer
  kNoSlot = 8,            // every connection slot taken (OVER_CAPACITY)
  kFdLimit = 9,           // accept hit EMFILE/ENFILE: shed
  kNoAlpn = 10,           // established without ALPN cloudtaser-beacon/1 (cannot happen)
  kShutdown = 11,         // waiting while the beacon drained (SHUTDOWN)
  kNoPeer = 12,           // a bridge not paired within the pairing timeout (NO_PEER)
  kGone = 13,             // the client closed before it was paired
};
inline constexpr size_t kRefusedKinds = 14;
const char* refused_name(Refused r);

inline constexpr size_t kAnswerKinds = 6;  // rdv::Answer 0..5

struct Stats {
  uint64_t listening = 0;  // 1: certificate in service, accepting (readiness)
  uint64_t accepted = 0;
  std::array<uint64_t, kRefusedKinds> refused{};
  uint64_t waiting_brokers = 0, waiting_bridges = 0;
  uint64_t pairs_active = 0, pairs_total = 0;
  uint64_t bytes_broker_to_bridge = 0, bytes_bridge_to_broker = 0;
  std::array<uint64_t, kAnswerKinds> answers{};  // by rdv::Answer
  uint64_t log_dropped = 0;                      // the TLS process's
  CertState certs;                               // its certificate and --client-ca (cert_report.h)
  bool operator==(const Stats&) const = default;
};

std::vector<uint8_t> encode_stats(const Stats& s);
// Exactly one encode_stats body, or nothing.
std::optional<Stats> decode_stats(Bytes b);
// The counters (under 512 bytes) and at most kMaxCertReports certificates.
inline constexpr uint32_t kMaxStatsSize = 16 * 1024;

// What the forwarding process adds itself.
struct ForwardFigures {
  bool draining = false;
  uint64_t log_dropped = 0;
  uint64_t http_refused = 0;  // metrics connections refused, evicted or shed
};
std::string render_metrics(const Stats& s, const ForwardFigures& f, const char* version);

}  // namespace ct::beacon
