// The beacon's pairing table (docs/beacon.md §2 "Pairing", §3 limits).
// Sans-IO: connections are numbers; the TLS process adds one when its
// preamble is read, removes one when it closes, and acts on what the table
// answers (write PAIRED to both, refuse with a code, keepalive, time out).
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <vector>

#include "shared/base/time.h"
#include "shared/wire/rendezvous.h"

namespace ct::beacon {

using ConnId = uint64_t;

struct PairingLimits {
  size_t brokers_per_id = 64;
  size_t bridges_per_id = 64;
  size_t waiting_total = 4096;
  // Waiting connections (brokers and bridges) one source address may hold:
  // a party with many ids cannot fill the table from one address.
  size_t waiting_per_source = 256;
  Duration pairing_timeout = rdv::kPairingTimeout;
  Duration keepalive = rdv::kKeepaliveInterval;
};

class PairingTable {
 public:
  explicit PairingTable(PairingLimits lim = {}) : lim_(lim) {}

  enum class Outcome { kPaired, kWaiting, kRefused };
  struct Added {
    Outcome outcome = Outcome::kWaiting;
    ConnId peer = 0;                                   // kPaired: the other side
    rdv::Answer refusal = rdv::Answer::kOverCapacity;  // kRefused
    std::string reason;                                // kRefused
  };
  // A connection whose preamble was read, from `source` (the admission
  // layer's source key as text; connections with none share one count). A
  // broker is paired with the oldest waiting bridge of its id that does not
  // exclude its instance, else waits; a bridge with the oldest waiting broker
  // of its id whose instance it does not exclude, else waits. Beyond a cap:
  // refused (the caller closes it).
  Added add(ConnId c, const rdv::Preamble& p, TimePoint now, const std::string& source = {});
  // A waiting connection closed (or was refused, or is being shut down).
  // Unknown or already-paired ids are ignored.
  void remove(ConnId c);

  struct Due {
    std::vector<ConnId> timed_out;  // bridges: NO_PEER, then close
    std::vector<ConnId> keepalive;  // brokers: send KEEPALIVE
  };
  Due tick(TimePoint now);
  TimePoint next_deadline() const;

  size_t waiting() const { return waiting_.size(); }
  size_t waiting_brokers() const;
  size_t waiting_bridges() const { return waiting_.size() - waiting_brokers(); }
  // Every waiting connection, oldest first (drain: SHUTDOWN to each).
  std::vector<ConnId> all_waiting() const;

 private:
  struct Waiting {
    rdv::Role role;
    rdv::RendezvousId id;
    std::vector<rdv::InstanceId> instances;
    TimePoint since;
    TimePoint due;  // bridges: the pairing timeout; brokers: the next keepalive
    std::string source;
  };
  struct Queues {
    std::deque<ConnId> brokers, bridges;  // oldest first
  };
  Added refuse(rdv::Answer code, std::string why) const;
  PairingLimits lim_;
  std::map<ConnId, Waiting> waiting_;
  std::map<rdv::RendezvousId, Queues> by_id_;
  std::map<std::string, size_t> by_source_;  // waiting connections per source
};

}  // namespace ct::beacon
