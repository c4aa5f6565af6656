// The link session over mutual TLS 1.3 (broker <-> bridge). The session (and
// its HELLO deadline) starts when the handshake completes; until then the
// handshake deadline applies (T-12, L-01).
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <vector>

#include "shared/base/cert_report.h"
#include "shared/stream/link.h"
#include "shared/tls/conn.h"
#include "shared/tls/context.h"
#include "shared/wire/rendezvous.h"

namespace ct {

// Beacon mode (docs/beacon.md): the link's connection goes to a beacon, which
// pairs it with the other side. The TlsLink first runs the outer session (a
// TLS 1.3 client of the beacon), sends the preamble and reads the beacon's
// answers; on PAIRED the link's own handshake starts inside the outer
// session, under the handshake deadline, as on a direct connection.
struct BeaconLeg {
  std::shared_ptr<const TlsContext> context;  // the outer session's (TlsContext::create_beacon)
  std::string sni;                            // the beacon's name; empty for an address
  std::string verify_name;                    // the name or address its certificate carries
  std::vector<uint8_t> preamble;              // rdv::encode_preamble
  // How long to wait for the next answer once the preamble is sent: a
  // bridge, the beacon's pairing timeout and a margin; a broker's waiting
  // connection, two keepalive intervals (the beacon is gone after that).
  Duration answer_timeout{};
  std::string beacon;  // for logs: the beacon's address
};

// The leg to the beacon at `addr` (normalised host:port, shared/tls/pairing.h):
// its name (or address) verified and sent as SNI, `p` as the preamble.
BeaconLeg beacon_leg(std::shared_ptr<const TlsContext> ctx, const std::string& addr,
                     const rdv::Preamble& p, Duration answer_timeout);

struct TlsLinkOptions {
  // Held for as long as the connection exists, across material reloads: its
  // SSL_CTX and the verify callback's state live there.
  std::shared_ptr<const TlsContext> context;
  bool server = false;
  std::string sni;  // the client's SNI; empty for an IP address or a server
  SessionConfig session;
  std::optional<BeaconLeg> beacon;
};

class TlsLink final : public Link {
 public:
  // Never calls the owner: a client's first flight goes out from the loop,
  // so the owner already holds the link when it hears of its end.
  TlsLink(Loop& loop, Owner& owner, uint64_t id, UniqueFd fd, TlsLinkOptions opt, TimePoint now);
  ~TlsLink() override;
  void on_io(uint32_t events) noexcept override;
  void flush() noexcept override;
  void tick(TimePoint now) noexcept override;
  TimePoint next_deadline() const override;

  bool established() const { return tls_->established(); }
  // Beacon mode: whether the beacon has paired this connection (always true
  // on a direct connection).
  bool paired() const { return phase_ == Phase::kLink; }
  std::string peer_subject() const { return tls_->peer_subject(); }
  SSL* ssl() const { return tls_->ssl(); }
  // Sends close_notify after the pending output (graceful close).
  void shutdown_tls() noexcept { tls_->shutdown(); }

 private:
  enum class Phase { kBeaconHandshake, kBeaconWait, kLink };
  void close_transport() noexcept override;
  void pump() noexcept;
  // The beacon phases; true once paired (the link's handshake may start).
  bool pump_beacon() noexcept;
  void update_interest() noexcept;
  std::shared_ptr<const TlsContext> context_;
  std::shared_ptr<const TlsContext> beacon_context_;
  std::optional<BeaconLeg> beacon_;
  std::unique_ptr<TlsConn> outer_;  // beacon mode: the session with the beacon
  std::unique_ptr<TlsConn> tls_;    // the link's own session
  Phase phase_ = Phase::kLink;
  rdv::AnswerReader answer_;
  TimePoint answer_deadline_ = TimePoint::max();
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

// A reload must not put into service a key that a linked peer does not pin
// (docs/protocol.md §5b): "" when `next` may replace `current`, else why not.
// Peers too old to tell their pins are logged (one line each), not checked.
// `peer` names the other side ("broker", "bridge").
std::string key_rollover_refusal(const std::map<uint64_t, std::unique_ptr<TlsLink>>& links,
                                 const CertState& current, const CertState& next, const char* peer);

}  // namespace ct
