#include "broker/bridge_pool.h"

namespace ct::broker {

bool bridge_usable(Link& l) {
  return !l.closed() && l.has_session() && l.session().ready() && !l.session().goaway_received() &&
         !l.session().goaway_sent();
}

bool bridge_has_room(Link& l) {
  return bridge_usable(l) && l.session().open_streams() < l.session().peer_hello().max_streams;
}

}  // namespace ct::broker
