#include "shared/wire/pin_rollover.h"

#include <algorithm>

#include "shared/wire/frame.h"

namespace ct {

bool pins_contain(const std::vector<Pin>& pins, const Pin& p) {
  return std::find(pins.begin(), pins.end(), p) != pins.end();
}

PeerPinsReport peer_pins_report(uint64_t link, const std::vector<Pin>& pins,
                                const std::optional<Pin>& ours) {
  PeerPinsReport r;
  r.link = static_cast<uint32_t>(link);
  r.current = ours && pins_contain(pins, *ours);
  // Counted, not size() - 1: a peer may list our pin twice.
  const auto others =
      std::count_if(pins.begin(), pins.end(), [&](const Pin& p) { return !ours || p != *ours; });
  r.others = static_cast<uint8_t>(std::min<std::ptrdiff_t>(others, 255));
  return r;
}

RolloverVerdict check_key_rollover(const std::optional<Pin>& old_pin, const Pin& next,
                                   const std::vector<PeerPinView>& peers, const char* peer) {
  RolloverVerdict v;
  if (!old_pin || *old_pin == next) return v;
  for (const PeerPinView& p : peers) {
    if (p.version < kPinsVersion) {
      v.unchecked.push_back(p.link);
      continue;
    }
    if (p.pins == nullptr || !p.pins->has_value()) continue;  // it pins nothing: CA only
    if (pins_contain(**p.pins, next)) continue;
    const std::string pin = format_pin(next);
    v.allowed = false;
    v.refusal = "new key " + pin + " is not pinned by the " + peer +
                " on conn=" + std::to_string(p.link) + " (it pins " +
                std::to_string((*p.pins)->size()) +
                " other key(s)): keeping the key in service; publish " + pin + " in the " + peer +
                "'s pin file first (and reload the " + peer + "), then reload again";
    return v;
  }
  return v;
}

}  // namespace ct
