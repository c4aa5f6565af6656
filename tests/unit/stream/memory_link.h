// Links whose sessions the test joins back to back with peer sessions in
// memory: no socket, no TLS; the test moves the bytes by hand (move) and so
// decides when each side sees them. Shared by the stream layer's tests.
#pragma once

#include <algorithm>
#include <optional>
#include <string>
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

// Both sessions exchange HELLOs until ready (a few rounds suffice).
inline void handshake(Session& x, Session& y) {
  for (int i = 0; i < 10; i++) {
    move(x, y);
    move(y, x);
  }
}

// Bytes the test makes: position-dependent, so a lost, doubled or reordered
// piece shows.
inline std::string pattern(size_t n, uint8_t salt) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; i++) s[i] = static_cast<char>((i * 131 + salt + i / 251) & 0xff);
  return s;
}

// One end of a stream as a test application sees it: what it still has to
// send (sent as capacity allows), what arrived, and whether it keeps up.
struct TestEnd {
  std::string to_send;
  size_t sent = 0;
  bool fin_after = false;  // FIN once to_send is all sent
  bool fin_sent = false;
  std::string got;
  size_t unconsumed = 0;  // arrived but not consumed (reader stalled)
  bool consume = true;
  bool fin = false;
  std::optional<Code> reset;

  // Sends what the stream's capacity allows.
  void send_some(Session& s, uint32_t id) {
    if (!s.stream_exists(id)) return;
    while (sent < to_send.size()) {
      const size_t cap = s.send_capacity(id);
      if (cap == 0) return;
      const size_t n = std::min(cap, to_send.size() - sent);
      s.send(id, Bytes(reinterpret_cast<const uint8_t*>(to_send.data()) + sent, n), false);
      sent += n;
    }
    if (fin_after && !fin_sent) {
      fin_sent = true;
      s.close_write(id);
    }
  }
  // Takes `s`'s events for stream `id` (the others are dropped).
  void take(Session& s, uint32_t id) {
    for (const Event& ev : s.take_events()) {
      if (ev.stream != id) continue;
      if (ev.kind == Event::kData) {
        got.append(reinterpret_cast<const char*>(ev.data.data()), ev.data.size());
        unconsumed += ev.data.size();
      }
      if (ev.kind == Event::kFin) fin = true;
      if (ev.kind == Event::kReset) reset = ev.code;
    }
    if (consume && unconsumed > 0 && s.stream_exists(id)) {
      s.consume(id, unconsumed);
      unconsumed = 0;
    }
  }
};

}  // namespace ct::testing_links
