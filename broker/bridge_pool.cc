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

bool bridge_has_room(Link& l) {
  return bridge_usable(l) && l.session().open_streams() < l.session().peer_hello().max_streams;
}

}  // namespace ct::broker
