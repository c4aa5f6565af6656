#include "beacon/pairing.h"

#include <algorithm>

#include "shared/base/check.h"

namespace ct::beacon {

namespace {

bool holds(const std::vector<rdv::InstanceId>& list, const rdv::InstanceId& instance) {
  return std::find(list.begin(), list.end(), instance) != list.end();
}

}  // namespace

PairingTable::Added PairingTable::refuse(rdv::Answer code, std::string why) const {
  Added a;
  a.outcome = Outcome::kRefused;
  a.refusal = code;
  a.reason = std::move(why);
  return a;
}

PairingTable::Added PairingTable::add(ConnId c, const rdv::Preamble& p, TimePoint now,
                                      const std::string& source) {
  CT_CHECK(!waiting_.contains(c));
  Queues& q = by_id_[p.id];
  const bool broker = p.role == rdv::Role::kBroker;
  std::deque<ConnId>& others = broker ? q.bridges : q.brokers;
  for (auto it = others.begin(); it != others.end(); ++it) {
    const Waiting& o = waiting_.at(*it);
    // A bridge is never paired with an instance it already holds.
    const bool fits =
        broker ? !holds(o.instances, p.instances.at(0)) : !holds(p.instances, o.instances.at(0));
    if (!fits) continue;
    Added a;
    a.outcome = Outcome::kPaired;
    a.peer = *it;
    if (auto src = by_source_.find(o.source); src != by_source_.end() && --src->second == 0)
      by_source_.erase(src);
    waiting_.erase(*it);
    others.erase(it);
    if (q.brokers.empty() && q.bridges.empty()) by_id_.erase(p.id);
    return a;
  }
  std::deque<ConnId>& mine = broker ? q.brokers : q.bridges;
  const size_t cap = broker ? lim_.brokers_per_id : lim_.bridges_per_id;
  if (const auto src = by_source_.find(source);
      src != by_source_.end() && src->second >= lim_.waiting_per_source) {
    if (q.brokers.empty() && q.bridges.empty()) by_id_.erase(p.id);
    return refuse(rdv::Answer::kOverCapacity, "too many waiting connections from this source (" +
                                                  std::to_string(lim_.waiting_per_source) + ")");
  }
  if (mine.size() >= cap || waiting_.size() >= lim_.waiting_total) {
    const bool per_id = mine.size() >= cap;
    if (q.brokers.empty() && q.bridges.empty()) by_id_.erase(p.id);
    return refuse(rdv::Answer::kOverCapacity,
                  per_id ? std::string("too many waiting ") + rdv::role_name(p.role) +
                               " connections for this id (" + std::to_string(cap) + ")"
                         : "too many waiting connections at this beacon (" +
                               std::to_string(lim_.waiting_total) + ")");
  }
  mine.push_back(c);
  waiting_.emplace(c, Waiting{p.role, p.id, p.instances, now,
                              now + (broker ? lim_.keepalive : lim_.pairing_timeout), source});
  by_source_[source]++;
  Added a;
  a.outcome = Outcome::kWaiting;
  return a;
}

void PairingTable::remove(ConnId c) {
  auto it = waiting_.find(c);
  if (it == waiting_.end()) return;
  auto q = by_id_.find(it->second.id);
  CT_CHECK(q != by_id_.end());
  auto& list = it->second.role == rdv::Role::kBroker ? q->second.brokers : q->second.bridges;
  list.erase(std::find(list.begin(), list.end(), c));
  if (q->second.brokers.empty() && q->second.bridges.empty()) by_id_.erase(q);
  if (auto src = by_source_.find(it->second.source); src != by_source_.end() && --src->second == 0)
    by_source_.erase(src);
  waiting_.erase(it);
}

PairingTable::Due PairingTable::tick(TimePoint now) {
  Due d;
  std::vector<ConnId> expired;
  for (auto& [c, w] : waiting_) {
    if (w.due > now) continue;
    if (w.role == rdv::Role::kBridge) {
      expired.push_back(c);
    } else {
      d.keepalive.push_back(c);
      w.due = now + lim_.keepalive;
    }
  }
  for (ConnId c : expired) remove(c);
  d.timed_out = std::move(expired);
  return d;
}

TimePoint PairingTable::next_deadline() const {
  TimePoint t = TimePoint::max();
  for (const auto& [c, w] : waiting_) t = std::min(t, w.due);
  return t;
}

size_t PairingTable::waiting_brokers() const {
  size_t n = 0;
  for (const auto& [id, q] : by_id_) n += q.brokers.size();
  return n;
}

std::vector<ConnId> PairingTable::all_waiting() const {
  std::vector<std::pair<TimePoint, ConnId>> v;
  for (const auto& [c, w] : waiting_) v.emplace_back(w.since, c);
  std::sort(v.begin(), v.end());
  std::vector<ConnId> out;
  for (const auto& [t, c] : v) out.push_back(c);
  return out;
}

}  // namespace ct::beacon
