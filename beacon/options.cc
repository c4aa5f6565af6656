#include "beacon/options.h"

namespace ct::beacon {

PairingLimits Options::pairing() const {
  PairingLimits l;
  l.brokers_per_id = waiting_per_id;
  l.bridges_per_id = waiting_per_id;
  l.waiting_total = waiting_total;
  l.waiting_per_source = waiting_per_source;
  l.pairing_timeout = std::chrono::milliseconds(pairing_timeout_ms);
  l.keepalive = std::chrono::milliseconds(keepalive_ms);
  return l;
}

std::vector<uint8_t> encode_options(const Options& o) {
  std::vector<uint8_t> out;
  ByteWriter w(out, kOptionsSize);
  w.u32(o.pairing_timeout_ms);
  w.u32(o.keepalive_ms);
  w.u32(o.waiting_per_id);
  w.u32(o.waiting_total);
  w.u32(o.per_source);
  w.u32(o.waiting_per_source);
  return out;
}

std::optional<Options> decode_options(Bytes b) {
  ByteReader r(b);
  Options o;
  o.pairing_timeout_ms = r.u32();
  o.keepalive_ms = r.u32();
  o.waiting_per_id = r.u32();
  o.waiting_total = r.u32();
  o.per_source = r.u32();
  o.waiting_per_source = r.u32();
  if (!r.finish()) return std::nullopt;
  auto in = [](uint32_t v, uint32_t max) { return v >= 1 && v <= max; };
  if (!in(o.pairing_timeout_ms, kMaxTimeoutMs) || !in(o.keepalive_ms, kMaxTimeoutMs) ||
      !in(o.waiting_per_id, kMaxWaitingPerIdFlag) || !in(o.waiting_total, kMaxWaitingFlag) ||
      !in(o.per_source, kMaxPerSourceFlag) || !in(o.waiting_per_source, kMaxPerSourceFlag))
    return std::nullopt;
  return o;
}

}  // namespace ct::beacon
