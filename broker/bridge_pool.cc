#include "broker/bridge_pool.h"

namespace ct::broker {

bool bridge_usable(Link& l) {
  return !l.closed() && l.has_session() && l.session().ready() && !l.session().goaway_received() &&
         !l.session().goaway_sent() && bridge_linked(l);
}

bool bridge_linked(Link& l) {
  // A version 2 bridge keeps a link by sending its first STATUS; until then
  // it may still close it as a duplicate (docs/protocol.md §5a).
  return l.has_session() && l.session().ready() &&
         (l.session().version() < 2 || l.session().peer_status().has_value());
}

UpstreamState bridge_upstream(Link& l) {
  if (!l.has_session()) return UpstreamState::kUnknown;
  const auto& st = l.session().peer_status();
  return st ? st->upstream : UpstreamState::kUnknown;
}

int upstream_rank(UpstreamState s) {
  switch (s) {
    case UpstreamState::kActive:
      return 0;
    case UpstreamState::kStandby:
    case UpstreamState::kPerfStandby:
      return 1;
    case UpstreamState::kUnknown:
      return 2;
    case UpstreamState::kSealed:
    case UpstreamState::kUninitialized:
    case UpstreamState::kUnreachable:
      return -1;
  }
  return -1;
}

bool bridge_serves(Link& l) {
  return bridge_usable(l) && upstream_rank(bridge_upstream(l)) >= 0;
}

bool bridge_has_room(Link& l) {
  return bridge_serves(l) && l.session().open_streams() < l.session().peer_hello().max_streams;
}

}  // namespace ct::broker
