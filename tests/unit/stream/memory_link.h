// Links whose sessions the test joins back to back with peer sessions in
// memory: no socket, no TLS; the test moves the bytes by hand (move) and so
// decides when each side sees them. Shared by the relay and splice tests.
#pragma once

#include <vector>

#include "shared/stream/link.h"
#include "shared/wire/session.h"

namespace ct::testing_links {

struct NullOwner : Link::Owner {
  void on_link_events(Link&) noexcept override {}
  void on_link_closed(Link&) noexcept override {}
};

// A link without a transport.
class MemoryLink final : public Link {
 public:
  MemoryLink(Loop& loop, Owner& owner, uint64_t id, const SessionConfig& c)
      : Link(loop, owner, id) {
    start_session(c, Clock::now());
  }
  void on_io(uint32_t) noexcept override {}
  void flush() noexcept override {}

 private:
  void close_transport() noexcept override {}
};

// A session config for one side: the opener plays the broker. No PINGs, so
// that only what the test does moves bytes.
inline SessionConfig cfg(bool opener) {
  SessionConfig c;
  c.role = opener ? Role::kBroker : Role::kBridge;
  c.opener = opener;
  c.ping_interval = Duration::zero();
  return c;
}

// Everything `from` has to send, fed to `to`.
inline void move(Session& from, Session& to) {
  for (int i = 0; i < 1000 && from.has_output(); i++) {
    const Bytes o = from.output();
    const std::vector<uint8_t> piece(o.begin(), o.end());
    from.output_written(piece.size());
    to.feed(piece, Clock::now());
  }
}

}  // namespace ct::testing_links
