// The broker TLS process's counters for /metrics and their STATS body (TLS
// process -> parent -> forwarding process, broker/metrics.h). Figures that
// live elsewhere (the open links' byte counts, the open streams, the
// admission pools) are read by the TLS process and passed in when a body is
// made; this class keeps only what would otherwise be lost: totals, and the
// bytes of links that already closed.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "broker/metrics.h"
#include "shared/os/admission.h"
#include "shared/wire/frame.h"
#include "shared/wire/session.h"

namespace ct::broker {

class BrokerStats {
 public:
  void stream_opened() { streams_total_++; }
  void pending_timeout() { pending_timeouts_++; }
  void reset(Code c) { resets_[static_cast<uint32_t>(c)]++; }
  void handshake_failed(HandshakeFailure why) { handshake_failures_[static_cast<uint32_t>(why)]++; }
  void link_error(Code c) { link_errors_[static_cast<uint32_t>(c)]++; }
  void beacon_paired(size_t b) { beacon_paired_[static_cast<uint32_t>(b)]++; }
  void beacon_lost(size_t b) { beacon_lost_[static_cast<uint32_t>(b)]++; }
  // A bridge link closed: its payload bytes stay in the totals.
  void link_closed(const SessionStats& s) {
    bytes_to_bridge_ += s.bytes_out;
    bytes_from_bridge_ += s.bytes_in;
  }

  // What the TLS process reads from its links, relays and pools when a body
  // is made.
  struct Live {
    uint64_t bridges_up = 0;
    uint64_t bytes_to_bridge = 0, bytes_from_bridge = 0;  // of the links still open
    uint64_t streams_open = 0;
    uint64_t wrappers_pending = 0;
    std::array<uint64_t, kRefusalKinds> admission{};  // by Refusal, the bridge port
    uint64_t log_dropped = 0;
    // Linked bridges by the UpstreamState they last reported.
    std::array<uint64_t, kUpstreamStates> by_upstream{};
    // Beacon mode: connections waiting at each beacon (in --beacon-address order).
    std::vector<uint64_t> beacon_waiting;
    // Our certificates and the linked bridges' (cert_report.h).
    CertState certs;
  };
  std::vector<MetricSample> samples(const Live& live) const;
  // The STATS body for `live`, or nothing when it equals the last one
  // returned: the parent and the forwarding process hear only changes.
  std::optional<std::vector<uint8_t>> changed_body(const Live& live);

 private:
  uint64_t streams_total_ = 0, pending_timeouts_ = 0;
  uint64_t bytes_to_bridge_ = 0, bytes_from_bridge_ = 0;
  std::map<uint32_t, uint64_t> handshake_failures_, resets_, link_errors_;
  std::map<uint32_t, uint64_t> beacon_paired_, beacon_lost_;
  std::vector<uint8_t> last_body_;
};

}  // namespace ct::broker
