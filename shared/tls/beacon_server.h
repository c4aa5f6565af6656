// The beacon's side of the outer TLS session (docs/beacon.md §1): a TLS 1.3
// server that requires ALPN "cloudtaser-beacon/1" (a ClientHello without it,
// or offering only other protocols, fails with no_application_protocol
// before any certificate is sent), and, when a client CA is configured,
// a client certificate chaining to it. No pins, no tickets, no early data.
// Only the beacon's TLS process uses it; the link's own contexts are in
// context.h.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>

#include "shared/base/result.h"
#include "shared/ipc/msgs.h"
#include "shared/tls/conn.h"

namespace ct {

inline constexpr std::string_view kBeaconAlpn = "cloudtaser-beacon/1";

class BeaconServerContext {
 public:
  // `m.cert_pem`/`m.key_pem`: the beacon's identity. `m.ca_pem` (--client-ca)
  // empty: no client certificate is asked for; else one is required.
  static Result<std::unique_ptr<BeaconServerContext>> create(const Material& m);
  ~BeaconServerContext();
  BeaconServerContext(const BeaconServerContext&) = delete;
  BeaconServerContext& operator=(const BeaconServerContext&) = delete;

  SSL_CTX* get() const { return ctx_; }
  bool client_auth() const { return client_auth_; }
  const std::string& own_pin() const { return own_pin_; }

 private:
  BeaconServerContext() = default;
  SSL_CTX* ctx_ = nullptr;
  bool client_auth_ = false;
  std::string own_pin_;
};

// Whether an established connection agreed on kBeaconAlpn (belt and braces:
// the context already refuses a handshake without it).
bool beacon_alpn_agreed(const TlsConn& c);

}  // namespace ct
