// A Session carried over a transport. PlainLink runs it over the data
// channel between two processes of one daemon; TlsLink (tls_link.h) over the mutual
// TLS connection between broker and bridge. The owner reacts to the session's
// events; output is flushed once per loop batch so many streams' frames leave
// in one write.
#pragma once

#include <functional>
#include <memory>

#include "shared/base/unique_fd.h"
#include "shared/ipc/shm_ring.h"
#include "shared/os/loop.h"
#include "shared/wire/session.h"

namespace ct {

class Link;

// One stream of one link: the key under which RelayTable and SpliceTable keep
// what they own. Ordered by link first, so a link's streams are one range
// (what a link's close walks) without a per-link index to keep in step.
struct StreamKey {
  const Link* link = nullptr;
  uint32_t id = 0;
  friend bool operator<(const StreamKey& x, const StreamKey& y) {
    if (x.link != y.link) return std::less<const Link*>()(x.link, y.link);
    return x.id < y.id;
  }
  bool operator==(const StreamKey&) const = default;
};

class Link : public Loop::Handler {
 public:
  struct Owner {
    virtual ~Owner() = default;
    // The session has events to handle (take them with session().take_events()).
    virtual void on_link_events(Link& l) noexcept = 0;
    // The link is gone (error, EOF, handshake failure). The owner drops its
    // streams and retires the link.
    virtual void on_link_closed(Link& l) noexcept = 0;
    // Beacon mode: a beacon paired the link's connection with the other
    // side's (a broker refills its pool of waiting connections here).
    virtual void on_link_paired(Link&) noexcept {}
  };

  Link(Loop& loop, Owner& owner, uint64_t id)
      : loop_(loop),
        owner_(owner),
        id_(id),
        timer_(loop.timers(), [this](TimePoint now) { on_timer(now); }) {}
  ~Link() override = default;

  uint64_t id() const { return id_; }
  bool has_session() const { return session_ != nullptr; }
  Session& session() { return *session_; }
  bool closed() const { return closed_; }
  const std::string& close_reason() const { return close_reason_; }

  // Writes pending session output to the transport.
  virtual void flush() noexcept = 0;
  // Deadline work (the session's HELLO, ping and dead-peer timeouts), run by
  // the link's own timer, which stays armed for next_deadline(): the loop
  // never visits a link with nothing due.
  virtual void tick(TimePoint now) noexcept;
  virtual TimePoint next_deadline() const;
  // Closes the transport (after a best-effort flush) and tells the owner once.
  void close(std::string reason) noexcept;

 protected:
  void start_session(const SessionConfig& cfg, TimePoint now);
  // Hands the session's events to the owner and, when the session died,
  // closes the link.
  void after_input() noexcept;
  // Arms the timer for next_deadline() when that is earlier than it is armed
  // for. A later deadline (input moved the dead-peer timeout on) is left to
  // on_timer: firing early finds nothing due and re-arms, which costs one
  // wake-up per interval instead of a heap update per batch of input.
  void arm_if_earlier() noexcept;
  virtual void close_transport() noexcept = 0;

  Loop& loop_;
  Owner& owner_;
  uint64_t id_;
  std::unique_ptr<Session> session_;
  bool closed_ = false;
  std::string close_reason_;

 private:
  void on_timer(TimePoint now) noexcept;
  Timer timer_;
};

// The data channel's wake-ups: two eventfds the parent made, one per
// direction. A process waits on `mine` (in epoll edge-triggered and never
// read: every write by the other process is an edge) and writes `peer` to
// wake the other. One 8-byte write per wake-up, and nothing to read: a byte
// on a socketpair cost a send with its socket-buffer work and a read.
struct ChannelWake {
  UniqueFd mine;
  UniqueFd peer;
  bool valid() const { return mine && peer; }
};

// The session over the data channel between a daemon's TLS and forwarding
// processes: bytes through a shared-memory ring (shm_ring.h), wake-ups
// through the two eventfds of `wake`, and the other process's exit through a
// socketpair (its EOF; nothing else is ever written to it).
class PlainLink final : public Link {
 public:
  // `wake` must be valid.
  PlainLink(Loop& loop, Owner& owner, uint64_t id, UniqueFd fd, std::unique_ptr<ShmRing> ring,
            ChannelWake wake, const SessionConfig& cfg, TimePoint now);
  ~PlainLink() override;
  void on_io(uint32_t events) noexcept override;
  void flush() noexcept override;
  // Closed because the other process broke the channel (an impossible ring
  // position, a protocol error), not because it exited or we replaced the
  // channel. Its owner then ends its own process: the parent restarts it and
  // joins both ends afresh (error policy: a bad internal peer is fatal).
  bool failed() const {
    return closed_ && !eof_ &&
           (ring_->corrupt() || (session_->dead() && session_->error_code() != Code::kNoError));
  }

 private:
  struct WakeHandler final : Loop::Handler {
    explicit WakeHandler(PlainLink& l) : link(l) {}
    void on_io(uint32_t) noexcept override { link.on_wake(); }
    PlainLink& link;
  };
  void close_transport() noexcept override;
  void on_wake() noexcept;
  // After a wake-up or socket event: output first (the peer may have made
  // room), then input, then what the socket said (`gone`, errno `err`).
  void serve(bool gone, int err) noexcept;
  void pump_input() noexcept;
  void wake_peer() noexcept;
  void update_interest() noexcept;
  UniqueFd fd_;
  std::unique_ptr<ShmRing> ring_;
  ChannelWake wake_;
  WakeHandler wake_handler_{*this};
  bool more_input_ = true;  // the ring may hold input we have not taken (EPOLLOUT: run again)
  bool eof_ = false;        // the other process closed the channel (it exited)
  uint32_t interest_ = 0;
};

}  // namespace ct
