// A Session carried over a transport. PlainLink runs it over a socketpair
// between two processes of one daemon; TlsLink (tls_link.h) over the mutual
// TLS connection between broker and bridge. The owner reacts to the session's
// events; output is flushed once per loop batch so many streams' frames leave
// in one write.
#pragma once

#include <memory>
#include <unordered_map>

#include "shared/loop.h"
#include "shared/session.h"
#include "shared/unique_fd.h"

namespace ct {

class Relay;
class Splice;

class Link : public Loop::Handler {
 public:
  struct Owner {
    virtual ~Owner() = default;
    // The session has events to handle (take them with session().take_events()).
    virtual void on_link_events(Link& l) noexcept = 0;
    // The link is gone (error, EOF, handshake failure). The owner drops its
    // streams and retires the link.
    virtual void on_link_closed(Link& l) noexcept = 0;
  };

  Link(Loop& loop, Owner& owner, uint64_t id) : loop_(loop), owner_(owner), id_(id) {}
  ~Link() override = default;

  uint64_t id() const { return id_; }
  bool has_session() const { return session_ != nullptr; }
  Session& session() { return *session_; }
  bool closed() const { return closed_; }
  const std::string& close_reason() const { return close_reason_; }

  // Writes pending session output to the transport.
  virtual void flush() noexcept = 0;
  virtual void tick(TimePoint now) noexcept;
  virtual TimePoint next_deadline() const;
  // Closes the transport (after a best-effort flush) and tells the owner once.
  void close(std::string reason) noexcept;

  // Streams of this link joined to something else (owned by the owner).
  std::unordered_map<uint32_t, Relay*> relays;
  std::unordered_map<uint32_t, Splice*> splices;

 protected:
  void start_session(const SessionConfig& cfg, TimePoint now);
  // Hands the session's events to the owner and, when the session died,
  // closes the link.
  void after_input() noexcept;
  virtual void close_transport() noexcept = 0;

  Loop& loop_;
  Owner& owner_;
  uint64_t id_;
  std::unique_ptr<Session> session_;
  bool closed_ = false;
  std::string close_reason_;
};

// The session over a plain stream socket (the TLS <-> forwarding socketpair).
class PlainLink final : public Link {
 public:
  PlainLink(Loop& loop, Owner& owner, uint64_t id, UniqueFd fd, const SessionConfig& cfg,
            TimePoint now);
  ~PlainLink() override;
  void on_io(uint32_t events) noexcept override;
  void flush() noexcept override;

 private:
  void close_transport() noexcept override;
  UniqueFd fd_;
  bool want_out_ = false;
};

}  // namespace ct
