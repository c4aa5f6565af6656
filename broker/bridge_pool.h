// Which bridge a wrapper's stream goes to, and the wrappers that wait for
// one. The broker TLS process owns its bridge links and its relays; the pool
// reads the links' sessions to choose (among the bridges that can take a
// stream, those whose OpenBao is the most useful, and of them the least
// loaded) and keeps the queue of wrappers held while none can, each with
// the deadline it got on arrival (--pending-timeout). It reaches the
// wrappers only through the Wrappers interface, so a unit test can play the
// TLS process with in-memory links and a fake clock.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>

#include "broker/stats.h"
#include "shared/base/log.h"
#include "shared/base/time.h"
#include "shared/stream/link.h"
#include "shared/wire/frame.h"
#include "shared/wire/limits.h"
#include "shared/wire/origin.h"

namespace ct::broker {

// A bridge link that takes new streams: linked and no GOAWAY either way.
bool bridge_usable(Link& l);
// The bridge keeps the link: HELLO done, and from a version 2 bridge its
// first STATUS.
bool bridge_linked(Link& l);
// The state the bridge last reported of its OpenBao (STATUS); unknown from
// a version 1 bridge, or before its first STATUS.
UpstreamState bridge_upstream(Link& l);
// Which bridges get new streams first (docs/protocol.md §5a): 0 active, 1 a
// standby or performance standby (OpenBao forwards to the active node), 2
// unknown (a version 1 bridge, or one that does not poll); -1 never: sealed,
// uninitialised or unreachable, whose OpenBao would only fail the request.
int upstream_rank(UpstreamState s);
// ...usable, its OpenBao can serve (rank >= 0), and below the concurrency
// the bridge advertised. Session::open would refuse a stream on a bridge at
// its max_streams: choosing one would re-queue the wrapper forever.
bool bridge_has_room(Link& l);
// Usable and its OpenBao can serve, full or not.
bool bridge_serves(Link& l);

template <class L>
class BridgePool {
 public:
  using Links = std::map<uint64_t, std::unique_ptr<L>>;
  // The TLS process's wrappers, by their stream id on the data channel.
  class Wrappers {
   public:
    virtual ~Wrappers() = default;
    // Still open and not yet given a bridge stream.
    virtual bool waiting(uint32_t wrapper) = 0;
    virtual void attach(uint32_t wrapper, L& bridge, uint32_t stream) = 0;
    virtual void reset(uint32_t wrapper, Code code) = 0;
    // The origin its forwarding process gave the stream (docs/protocol.md
    // §3a), for the bridge stream's OPEN; empty: none.
    virtual Bytes origin(uint32_t) { return {}; }
  };

  BridgePool(const Links& links, Wrappers& wrappers, BrokerStats& stats)
      : links_(links), wrappers_(wrappers), stats_(stats) {}

  // The bridge a new stream goes to: of those with room, the best ranked
  // OpenBao (upstream_rank), and of those the least loaded.
  L* least_loaded() const {
    L* best = nullptr;
    int best_rank = 0;
    for (auto& [id, l] : links_) {
      if (!bridge_has_room(*l)) continue;
      const int rank = upstream_rank(bridge_upstream(*l));
      if (best == nullptr || rank < best_rank ||
          (rank == best_rank && l->session().open_streams() < best->session().open_streams())) {
        best = l.get();
        best_rank = rank;
      }
    }
    return best;
  }

  // Why a wrapper cannot be served: a bridge whose OpenBao can serve is
  // connected but every such one is at the concurrency it advertised
  // (REFUSED), or there is none (NO_BRIDGE: none at all, or only bridges
  // whose OpenBao is sealed, uninitialised or unreachable).
  Code no_room_code() const {
    for (auto& [id, l] : links_)
      if (bridge_serves(*l)) return Code::kRefused;
    return Code::kNoBridge;
  }
  // Bridges linked, none of which can serve: what the wait is for.
  bool only_unserving() const {
    bool any = false;
    for (auto& [id, l] : links_) {
      if (bridge_serves(*l)) return false;
      any = any || bridge_usable(*l);
    }
    return any;
  }

  // A wrapper opened a stream: give it a bridge stream now, or hold it until
  // now + pending_timeout, or (queue full, or draining) reset it.
  void place(uint32_t wrapper, TimePoint now, std::chrono::milliseconds pending_timeout,
             bool draining) {
    if (pending_.empty() && try_open(wrapper)) return;  // never overtake a waiting wrapper
    if (pending_.size() >= limits::kMaxPendingOpens || draining) {
      const Code c = no_room_code();
      LOG_WARN_THROTTLED(log_, "stream=%u refused (%s): %zu wrappers already waiting", wrapper,
                         std::string(code_name(c)).c_str(), pending_.size());
      stats_.reset(c);
      wrappers_.reset(wrapper, c);
      return;
    }
    if (pending_.empty())
      LOG_INFO("%s: holding wrappers for up to %lld ms",
               no_room_code() == Code::kRefused ? "every bridge is at its stream limit"
               : only_unserving() ? "no bridge's OpenBao can serve (sealed, uninitialized or "
                                    "unreachable)"
                                  : "no bridge connected",
               static_cast<long long>(pending_timeout.count()));
    pending_.push_back({wrapper, now + pending_timeout});
  }

  // Serves held wrappers in arrival order, each keeping the deadline it got
  // on arrival. Every turn takes one off the queue or stops, so it ends even
  // when every bridge is at its max_streams. The TLS process calls it after
  // every batch while wrappers wait: a bridge connecting or a stream closing
  // makes room.
  void serve() {
    while (!pending_.empty()) {
      const uint32_t w = pending_.front().wrapper;
      if (wrappers_.waiting(w) && !try_open(w)) return;
      pending_.pop_front();
    }
  }

  // Resets the held wrappers whose deadline passed.
  void expire(TimePoint now) {
    while (!pending_.empty() && pending_.front().deadline <= now) {
      const uint32_t w = pending_.front().wrapper;
      pending_.pop_front();
      if (!wrappers_.waiting(w)) continue;
      const Code c = no_room_code();
      LOG_WARN_THROTTLED(log_,
                         "stream=%u no bridge within the pending timeout: closing "
                         "the wrapper (%s)",
                         w, std::string(code_name(c)).c_str());
      stats_.pending_timeout();
      stats_.reset(c);
      wrappers_.reset(w, c);
    }
  }

  // The data channel is gone, and every wrapper with it.
  void clear() { pending_.clear(); }
  size_t pending() const { return pending_.size(); }
  TimePoint next_deadline() const {
    return pending_.empty() ? TimePoint::max() : pending_.front().deadline;
  }

 private:
  // Opens a stream for the wrapper on the least loaded bridge with room.
  bool try_open(uint32_t wrapper) {
    L* b = least_loaded();
    if (b == nullptr) return false;
    const Bytes origin = wrappers_.origin(wrapper);
    const uint32_t id = b->session().open(origin);
    if (id == 0) return false;
    LOG_LINK(LOG_DEBUG, b->id(), "stream=%u opened for wrapper stream %u%s", id, wrapper,
             origin_log(origin).c_str());
    wrappers_.attach(wrapper, *b, id);
    return true;
  }

  // " uid=..." for a log line, from an origin the session already checked.
  static std::string origin_log(Bytes origin) {
    auto o = decode_origin(origin, nullptr);
    return o && o->stream_id != 0 ? " uid=" + stream_uid_hex(o->stream_id) : std::string();
  }

  struct Held {
    uint32_t wrapper;
    TimePoint deadline;
  };
  const Links& links_;
  Wrappers& wrappers_;
  BrokerStats& stats_;
  std::deque<Held> pending_;
  // A remote peer (a wrapper flood with no bridge) can make us log at will.
  log::Throttle log_;
};

}  // namespace ct::broker
