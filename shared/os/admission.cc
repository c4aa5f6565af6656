#include "shared/os/admission.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>

namespace ct {

std::string SourceKey::str() const {
  char buf[INET6_ADDRSTRLEN] = "?";
  if (family == AF_INET) {
    inet_ntop(AF_INET, addr.data(), buf, sizeof buf);
    return buf;
  }
  if (family == AF_INET6) {
    inet_ntop(AF_INET6, addr.data(), buf, sizeof buf);
    return std::string(buf) + "/64";
  }
  return "?";
}

std::optional<SourceKey> source_key(const sockaddr_storage& ss) {
  SourceKey k;
  if (ss.ss_family == AF_INET) {
    sockaddr_in a;
    std::memcpy(&a, &ss, sizeof a);
    k.family = AF_INET;
    std::memcpy(k.addr.data(), &a.sin_addr, 4);
    return k;
  }
  if (ss.ss_family == AF_INET6) {
    sockaddr_in6 a;
    std::memcpy(&a, &ss, sizeof a);
    if (IN6_IS_ADDR_V4MAPPED(&a.sin6_addr)) {
      // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d: one host, one key.
      k.family = AF_INET;
      std::memcpy(k.addr.data(), a.sin6_addr.s6_addr + 12, 4);
      return k;
    }
    k.family = AF_INET6;
    // One host normally owns a whole /64; keying single addresses would give
    // it 2^64 sources.
    std::memcpy(k.addr.data(), a.sin6_addr.s6_addr, 8);
    return k;
  }
  return std::nullopt;
}

const char* refusal_name(Refusal r) {
  switch (r) {
    case Refusal::kEvicted:
      return "evicted";
    case Refusal::kPerSource:
      return "per_source";
    case Refusal::kNoReservedSlot:
      return "no_reserved_slot";
    case Refusal::kDeadline:
      return "deadline";
    case Refusal::kFdLimit:
      return "fd_limit";
    case Refusal::kPaused:
      return "paused";
  }
  return "other";
}

void Admission::dec(std::map<SourceKey, size_t>& m, const SourceKey& k) {
  auto it = m.find(k);
  if (it == m.end()) return;
  if (--it->second == 0) m.erase(it);
}

size_t Admission::get(const std::map<SourceKey, size_t>& m, const SourceKey& k) {
  auto it = m.find(k);
  return it == m.end() ? 0 : it->second;
}

Admission::Decision Admission::on_accept(Id id, const SourceKey& src, TimePoint now) {
  Decision d;
  if (lim_.handshakes == 0) {
    if (est_.size() >= lim_.established) {
      // The owner accepted although accepting() said no: refuse, never grow.
      d.why = Refusal::kPaused;
      count(d.why);
      return d;
    }
    if (lim_.established_per_source != 0 && get(est_per_src_, src) >= lim_.established_per_source) {
      d.why = Refusal::kPerSource;
      count(d.why);
      return d;
    }
    est_[id] = src;
    est_per_src_[src]++;
    d.admit = true;
    return d;
  }
  if (get(hs_per_src_, src) >= lim_.handshakes_per_source) {
    d.why = Refusal::kPerSource;
    count(d.why);
    return d;
  }
  if (hs_.size() >= lim_.handshakes) {
    auto oldest = hs_.begin();
    if (now - oldest->second.admitted < lim_.min_age) {
      d.why = Refusal::kPaused;
      count(d.why);
      return d;
    }
    d.evict = oldest->first;
    dec(hs_per_src_, oldest->second.src);
    hs_.erase(oldest);
    count(Refusal::kEvicted);
  }
  hs_[id] = {src, now};
  hs_per_src_[src]++;
  d.admit = true;
  return d;
}

bool Admission::on_established(Id id) {
  auto it = hs_.find(id);
  if (it == hs_.end()) return false;
  const SourceKey src = it->second.src;
  dec(hs_per_src_, src);
  hs_.erase(it);
  if (est_.size() >= lim_.established ||
      (lim_.established_per_source != 0 && get(est_per_src_, src) >= lim_.established_per_source)) {
    count(Refusal::kNoReservedSlot);
    return false;
  }
  est_[id] = src;
  est_per_src_[src]++;
  return true;
}

void Admission::on_closed(Id id) {
  if (auto it = hs_.find(id); it != hs_.end()) {
    dec(hs_per_src_, it->second.src);
    hs_.erase(it);
  }
  if (auto it = est_.find(id); it != est_.end()) {
    dec(est_per_src_, it->second);
    est_.erase(it);
  }
}

std::vector<Admission::Id> Admission::expired(TimePoint now) {
  std::vector<Id> out;
  // Deadlines follow admission order: stop at the first one still running.
  for (auto it = hs_.begin(); it != hs_.end();) {
    if (now - it->second.admitted < lim_.handshake_deadline) break;
    out.push_back(it->first);
    dec(hs_per_src_, it->second.src);
    it = hs_.erase(it);
    count(Refusal::kDeadline);
  }
  return out;
}

bool Admission::accepting(TimePoint now) const {
  if (lim_.handshakes == 0) return est_.size() < lim_.established;
  if (hs_.size() < lim_.handshakes) return true;
  return now - hs_.begin()->second.admitted >= lim_.min_age;
}

TimePoint Admission::next_deadline() const {
  if (hs_.empty()) return TimePoint::max();
  const TimePoint oldest = hs_.begin()->second.admitted;
  TimePoint t = oldest + lim_.handshake_deadline;
  if (hs_.size() >= lim_.handshakes) t = std::min(t, oldest + lim_.min_age);
  return t;
}

std::vector<uint8_t> encode_listener_options(const ListenerOptions& o) {
  std::vector<uint8_t> out;
  out.reserve(kListenerOptionsSize);
  ByteWriter w(out, kListenerOptionsSize);
  w.u32(o.max_per_source);
  w.u8(o.probes_only);
  return out;
}

std::optional<ListenerOptions> decode_listener_options(Bytes b) {
  ListenerOptions o;
  if (b.empty()) return o;
  ByteReader r(b);
  o.max_per_source = r.u32();
  o.probes_only = r.u8();
  if (!r.finish() || o.probes_only > 1) return std::nullopt;
  return o;
}

}  // namespace ct
