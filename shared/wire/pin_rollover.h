// Whether a reload may put a new key of ours into service (docs/protocol.md
// §5b, issue 15): every linked peer that told us its pins (PINS, version 4)
// must pin the new key, or the next handshake with it would fail and, once
// the live links drop, nothing could reconnect. Pure: the TLS processes hand
// in what their links know and log or refuse what comes back.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "shared/base/cert_report.h"
#include "shared/base/pin.h"

namespace ct {

// What one live link knows of its peer's pins.
struct PeerPinView {
  uint64_t link = 0;     // the connection id, for the message
  uint16_t version = 0;  // the link's protocol version
  // The peer's last PINS; nullopt when it sent none (version 4: it pins
  // nothing and verifies by CA; below 4: unknown).
  const std::optional<std::vector<Pin>>* pins = nullptr;
};

struct RolloverVerdict {
  bool allowed = true;
  // When refused: one line naming the key, the link and what to do.
  std::string refusal;
  // Links whose peer is below version 4: the check could not be made.
  std::vector<uint64_t> unchecked;
};

// `old_pin`: our key in service (nullopt at start, when nothing is); `next`:
// the key of the material being loaded. The same key is always allowed (a
// renewal that kept it); so is any key at start. `peer` names the other side
// in the message ("bridge", "broker").
RolloverVerdict check_key_rollover(const std::optional<Pin>& old_pin, const Pin& next,
                                   const std::vector<PeerPinView>& peers, const char* peer);

// The figures of one link for the metrics (cert_report.h): whether the
// peer's `pins` hold `ours` and how many other keys they hold.
PeerPinsReport peer_pins_report(uint64_t link, const std::vector<Pin>& pins,
                                const std::optional<Pin>& ours);

// Whether `pins` holds `p`.
bool pins_contain(const std::vector<Pin>& pins, const Pin& p);

}  // namespace ct
