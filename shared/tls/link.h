// The link session over mutual TLS 1.3 (broker <-> bridge). The session (and
// its HELLO deadline) starts when the handshake completes; until then the
// handshake deadline applies (T-12, L-01).
#pragma once

#include <map>
#include <memory>

#include "shared/stream/link.h"
#include "shared/tls/conn.h"
#include "shared/tls/context.h"

namespace ct {

struct TlsLinkOptions {
  // Held for as long as the connection exists, across material reloads: its
  // SSL_CTX and the verify callback's state live there.
  std::shared_ptr<const TlsContext> context;
  bool server = false;
  std::string sni;  // the client's SNI; empty for an IP address or a server
  SessionConfig session;
};

class TlsLink final : public Link {
 public:
  TlsLink(Loop& loop, Owner& owner, uint64_t id, UniqueFd fd, TlsLinkOptions opt, TimePoint now);
  ~TlsLink() override;
  void on_io(uint32_t events) noexcept override;
  void flush() noexcept override;
  void tick(TimePoint now) noexcept override;
  TimePoint next_deadline() const override;

  bool established() const { return tls_.established(); }
  std::string peer_subject() const { return tls_.peer_subject(); }
  SSL* ssl() const { return tls_.ssl(); }
  // Sends close_notify after the pending output (graceful close).
  void shutdown_tls() noexcept { tls_.shutdown(); }

 private:
  void close_transport() noexcept override;
  void pump() noexcept;
  void update_interest() noexcept;
  std::shared_ptr<const TlsContext> context_;
  TlsConn tls_;
  SessionConfig cfg_;
  TimePoint handshake_deadline_;
  bool want_out_ = false;
  bool registered_ = false;
};

// After a material reload: a link whose peer `ctx` no longer admits (a
// removed pin, another CA) ends now, with GOAWAY(REFUSED) and close_notify so
// the peer learns why, not at its next handshake; a handshake begun before the
// reload would finish under the old material, so it is closed and the peer
// redials under the new one. `peer` names the other side in the log line.
void close_links_not_admitted(std::map<uint64_t, std::unique_ptr<TlsLink>>& links,
                              const TlsContext& ctx, const char* peer);

}  // namespace ct
