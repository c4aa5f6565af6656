// OpenSSL configuration for the link: TLS 1.3 only, a certificate required
// from both sides, the chain verified against the given CA, and - where pins
// are configured - the verified leaf's SubjectPublicKeyInfo must hash to one
// of them. No tickets, no session cache, no renegotiation, no early data: every
// connection is a full handshake, so a pin change applies to the next one.
// Only the TLS processes link this (libtls.a).
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>

#include "shared/base/cert_report.h"
#include "shared/base/result.h"
#include "shared/ipc/msgs.h"

namespace ct {

class TlsContext {
 public:
  enum class Side { kServer, kClient };
  // Builds a context from PEM material. A failure names what is wrong in one
  // line (e.g. "private key does not match the certificate").
  // `verify_name` (client side): the DNS name or IP the broker's certificate
  // must carry; empty skips the name check (pins and the CA still apply).
  static Result<std::unique_ptr<TlsContext>> create(Side side, const Material& m,
                                                    const std::string& verify_name);
  // Beacon mode: the outer session's client context (docs/beacon.md §1):
  // TLS 1.3, ALPN cloudtaser-beacon/1, the beacon's certificate checked
  // against m.beacon_ca_pem and m.beacon_pins; its name is checked per
  // connection (TlsConn::verify_peer_name), one beacon per address.
  static Result<std::unique_ptr<TlsContext>> create_beacon(const Material& m);
  // The context wrappers' TLS ends in, inside the bridge (--service-cert): the
  // certificate wrappers trust for the broker's in-cluster name.
  static Result<std::unique_ptr<TlsContext>> create_service(const std::string& cert_pem,
                                                            const std::string& key_pem);
  // The bridge health probe's client context for an https:// --vault-addr
  // (--vault-ca): TLS 1.2 or 1.3, the server's chain verified against
  // `ca_pem` only (never the system store), no certificate of ours. The
  // name is checked per connection (TlsStream's client constructor).
  static Result<std::unique_ptr<TlsContext>> create_upstream(const std::string& ca_pem);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  SSL_CTX* get() const { return ctx_; }
  Side side() const { return side_; }
  const std::string& verify_name() const { return verify_name_; }
  const std::vector<Pin>& pins() const { return pins_; }
  // The pin of our own certificate (for logs).
  const std::string& own_pin() const { return own_pin_; }
  // Whether the peer of an established connection would pass this context's
  // CA, name, EKU and pins now (after a reload: links to a peer that no
  // longer does are closed). A failure names the reason.
  Result<void> peer_trusted(SSL* ssl) const;

 private:
  TlsContext() = default;
  // The leaf checks beyond the chain: the peer's extended key usage (clientAuth
  // for bridges, serverAuth for brokers) and the pins.
  Result<void> leaf_allowed(X509* leaf) const;
  static int verify_callback(int ok, X509_STORE_CTX* sctx);
  SSL_CTX* ctx_ = nullptr;
  Side side_ = Side::kServer;
  std::string verify_name_;
  std::vector<Pin> pins_;
  std::string own_pin_;
};

// Installs a PEM certificate chain and its unencrypted key; checks they match.
// Returns the pin of the certificate's key (for logs; empty if unhashable).
Result<std::string> load_identity(SSL_CTX* c, const std::string& cert_pem,
                                  const std::string& key_pem);
// Whether the first certificate in `cert_pem` carries `name` (a DNS name or
// an IP address) as a subjectAltName.
bool cert_has_name(const std::string& cert_pem, const std::string& name);
// SHA-256 of the certificate's DER SubjectPublicKeyInfo.
bool spki_pin(X509* cert, Pin* out);
// The certificate's notAfter in unix seconds; false if it cannot be read.
bool cert_not_after(const X509* cert, int64_t* out);
// What the metrics say of `m`'s certificates (shared/base/cert_report.h):
// our leaf (with its pin) and the chain after it, every anchor of the CA
// file, the service certificate, --vault-ca, the beacon CA and client
// certificate, each as far as given; pins: the peer pins configured.
// Material that parsed for TlsContext::create parses here; a certificate
// that does not is left out.
CertState material_certs(const Material& m);
// The peer's leaf on an established connection, as role kPeer with index
// `link`; false when there is none.
bool peer_cert_report(SSL* ssl, uint32_t link, CertReport* out);
// Loads every OpenSSL piece a sandboxed process would otherwise load lazily
// (error strings, providers, the RNG), so nothing needs a file afterwards.
void tls_global_init();
// The OpenSSL error queue as one line (and clears it).
std::string tls_errors();

}  // namespace ct
