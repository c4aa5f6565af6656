#include "shared/tls/context.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>
#include <time.h>

#include "shared/base/log.h"
#include "shared/tls/conn.h"

namespace ct {

namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr mem_bio(const std::string& s) {
  return BioPtr(BIO_new_mem_buf(s.data(), static_cast<int>(s.size())));
}

// Encrypted keys are refused rather than prompting on a terminal nobody sees.
int no_passphrase(char*, int, int, void*) {
  return -1;
}

bool is_ip(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

// Trust anchors: only the given CA file, never the system store.
Result<void> load_anchors(SSL_CTX* c, const std::string& ca_pem) {
  X509_STORE* store = SSL_CTX_get_cert_store(c);
  BioPtr ab = mem_bio(ca_pem);
  int anchors = 0;
  bool not_ca = false;
  while (X509* ca = PEM_read_bio_X509(ab.get(), nullptr, no_passphrase, nullptr)) {
    // A leaf given as the CA file would make that one certificate the only
    // peer accepted, silently: refused, so the mistake shows at start.
    if ((X509_get_extension_flags(ca) & EXFLAG_CA) == 0)
      not_ca = true;
    else if (X509_STORE_add_cert(store, ca) == 1)
      anchors++;
    X509_free(ca);
  }
  ERR_clear_error();
  if (not_ca)
    return fail("CA file holds a certificate that is not a CA (no basicConstraints CA:TRUE)");
  if (anchors == 0) return fail("CA file holds no PEM certificate");
  return {};
}

// TLS 1.3 only, every connection a full handshake (the header says why).
void link_options(SSL_CTX* c) {
  SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(c, 0);
  SSL_CTX_set_max_early_data(c, 0);
}

}  // namespace

std::string tls_errors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

void tls_global_init() {
  OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS | OPENSSL_INIT_LOAD_CRYPTO_STRINGS |
                       OPENSSL_INIT_NO_LOAD_CONFIG,
                   nullptr);
  unsigned char b[32];
  // Seeds the DRBG now, while /dev/urandom and getrandom are both reachable.
  if (RAND_bytes(b, sizeof b) != 1) LOG_WARN("RAND_bytes failed: %s", tls_errors().c_str());
}

bool cert_has_name(const std::string& cert_pem, const std::string& name) {
  BioPtr b = mem_bio(cert_pem);
  X509* c = PEM_read_bio_X509(b.get(), nullptr, no_passphrase, nullptr);
  if (c == nullptr) return false;
  const bool ok = is_ip(name) ? X509_check_ip_asc(c, name.c_str(), 0) == 1
                              : X509_check_host(c, name.c_str(), name.size(), 0, nullptr) == 1;
  X509_free(c);
  ERR_clear_error();
  return ok;
}

bool spki_pin(X509* cert, Pin* out) {
  unsigned char* der = nullptr;
  const int len = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(cert), &der);
  if (len <= 0) return false;
  unsigned int md_len = 0;
  const bool ok =
      EVP_Digest(der, static_cast<size_t>(len), out->data(), &md_len, EVP_sha256(), nullptr) == 1 &&
      md_len == out->size();
  OPENSSL_free(der);
  return ok;
}

bool cert_not_after(const X509* cert, int64_t* out) {
  const ASN1_TIME* t = X509_get0_notAfter(cert);
  struct tm tm {};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) return false;
  *out = static_cast<int64_t>(timegm(&tm));
  return true;
}

namespace {

// Appends a report for each certificate in `pem` (the first one with its pin
// when `first_pinned`; the rest as `rest`).
void add_certs(CertState* s, const std::string& pem, CertRole first, CertRole rest,
               bool first_pinned) {
  if (pem.empty()) return;
  BioPtr b = mem_bio(pem);
  uint32_t n = 0;
  while (X509* c = PEM_read_bio_X509(b.get(), nullptr, no_passphrase, nullptr)) {
    CertReport r;
    r.role = n == 0 ? first : rest;
    r.index = first == rest ? n : (n == 0 ? 0 : n - 1);
    const bool dated = cert_not_after(c, &r.not_after);
    if (n == 0 && first_pinned) r.has_pin = spki_pin(c, &r.pin);
    X509_free(c);
    if (dated && s->certs.size() < kMaxCertReports) s->certs.push_back(r);
    n++;
    // The service and beacon client chains' intermediates would collide
    // with our leaf's in the labels; their leaf is what expires first.
    if (first != rest && first != CertRole::kLeaf) break;
  }
  ERR_clear_error();  // the loop ends on a "no start line" error
}

}  // namespace

CertState material_certs(const Material& m) {
  CertState s;
  add_certs(&s, m.cert_pem, CertRole::kLeaf, CertRole::kChain, true);
  add_certs(&s, m.ca_pem, CertRole::kCa, CertRole::kCa, false);
  add_certs(&s, m.service_cert_pem, CertRole::kService, CertRole::kChain, true);
  add_certs(&s, m.upstream_ca_pem, CertRole::kVaultCa, CertRole::kVaultCa, false);
  add_certs(&s, m.beacon_ca_pem, CertRole::kBeaconCa, CertRole::kBeaconCa, false);
  add_certs(&s, m.beacon_cert_pem, CertRole::kBeaconClient, CertRole::kChain, true);
  s.pins = static_cast<uint32_t>(m.pins.size());
  return s;
}

bool peer_cert_report(SSL* ssl, uint32_t link, CertReport* out) {
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) return false;
  CertReport r;
  r.role = CertRole::kPeer;
  r.index = link;
  if (!cert_not_after(leaf, &r.not_after)) return false;
  r.has_pin = spki_pin(leaf, &r.pin);
  *out = r;
  return true;
}

Result<std::string> load_identity(SSL_CTX* c, const std::string& cert_pem,
                                  const std::string& key_pem) {
  // Our certificate chain: the leaf first, then any intermediates.
  BioPtr cb = mem_bio(cert_pem);
  X509* leaf = PEM_read_bio_X509(cb.get(), nullptr, no_passphrase, nullptr);
  if (leaf == nullptr) return fail("certificate file holds no PEM certificate");
  const bool used = SSL_CTX_use_certificate(c, leaf) == 1;
  Pin own;
  std::string own_pin;
  if (spki_pin(leaf, &own)) own_pin = format_pin(own);
  X509_free(leaf);
  if (!used) return fail("certificate refused: " + tls_errors());
  while (X509* extra = PEM_read_bio_X509(cb.get(), nullptr, no_passphrase, nullptr)) {
    if (SSL_CTX_add0_chain_cert(c, extra) != 1) {
      X509_free(extra);
      return fail("chain certificate refused: " + tls_errors());
    }
  }
  ERR_clear_error();  // the loop above ends on a "no start line" error

  BioPtr kb = mem_bio(key_pem);
  EVP_PKEY* key = PEM_read_bio_PrivateKey(kb.get(), nullptr, no_passphrase, nullptr);
  if (key == nullptr) return fail("key file holds no unencrypted PEM private key");
  const bool key_ok = SSL_CTX_use_PrivateKey(c, key) == 1;
  EVP_PKEY_free(key);
  if (!key_ok || SSL_CTX_check_private_key(c) != 1) {
    ERR_clear_error();
    return fail("private key does not match the certificate");
  }

  return own_pin;
}

Result<void> TlsContext::leaf_allowed(X509* leaf) const {
  // The peer's role, stated by its certificate and required explicitly:
  // OpenSSL's purpose check passes a certificate that has no EKU at all, so a
  // broker's serverAuth-only certificate (or one with none) could act as a
  // bridge, and the other way round.
  const uint32_t want = side_ == Side::kServer ? XKU_SSL_CLIENT : XKU_SSL_SERVER;
  if ((X509_get_extension_flags(leaf) & EXFLAG_XKUSAGE) == 0 ||
      (X509_get_extended_key_usage(leaf) & want) == 0) {
    return fail(std::string("peer certificate lacks the ") +
                (side_ == Side::kServer ? "clientAuth" : "serverAuth") + " extended key usage");
  }
  if (pins_.empty()) return {};
  // The pin is checked on the leaf the chain was verified for, never on
  // whatever else the peer sent along.
  Pin p;
  if (!spki_pin(leaf, &p)) return fail("cannot hash the peer certificate key");
  for (const Pin& want_pin : pins_)
    if (want_pin == p) return {};
  return fail("peer certificate key " + format_pin(p) + " matches no configured pin");
}

int TlsContext::verify_callback(int ok, X509_STORE_CTX* sctx) {
  if (ok != 1) return 0;
  if (X509_STORE_CTX_get_error_depth(sctx) != 0) return 1;
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx()));
  if (ssl == nullptr) return 0;
  auto* self = static_cast<TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  if (self == nullptr) return 0;
  const auto allowed = self->leaf_allowed(X509_STORE_CTX_get_current_cert(sctx));
  if (allowed) return 1;
  // A peer can cause this at will: one line per interval.
  static log::Throttle throttle;
  LOG_WARN_THROTTLED(throttle, "%s", allowed.what().c_str());
  X509_STORE_CTX_set_error(sctx, X509_V_ERR_APPLICATION_VERIFICATION);
  return 0;
}

Result<void> TlsContext::peer_trusted(SSL* ssl) const {
  X509* leaf = SSL_get0_peer_certificate(ssl);
  if (leaf == nullptr) return fail("no peer certificate");
  // What the peer sent along (with or without the leaf, by side): untrusted
  // intermediates only; the anchors are this context's CA file.
  STACK_OF(X509)* sent = SSL_get_peer_cert_chain(ssl);
  X509_STORE_CTX* sctx = X509_STORE_CTX_new();
  if (sctx == nullptr) return fail("out of memory");
  const bool init =
      X509_STORE_CTX_init(sctx, SSL_CTX_get_cert_store(ctx_), leaf, sent) == 1 &&
      X509_VERIFY_PARAM_set1(X509_STORE_CTX_get0_param(sctx), SSL_CTX_get0_param(ctx_)) == 1;
  Result<void> r;
  if (!init)
    r = fail("cannot verify the peer certificate: " + tls_errors());
  else if (X509_verify_cert(sctx) != 1)
    r = fail(std::string("peer certificate no longer verifies: ") +
             X509_verify_cert_error_string(X509_STORE_CTX_get_error(sctx)));
  else
    r = leaf_allowed(leaf);
  X509_STORE_CTX_free(sctx);
  ERR_clear_error();
  return r;
}

Result<std::unique_ptr<TlsContext>> TlsContext::create(Side side, const Material& m,
                                                       const std::string& verify_name) {
  std::unique_ptr<TlsContext> t(new TlsContext());
  t->side_ = side;
  t->verify_name_ = verify_name;
  t->pins_ = m.pins;
  ERR_clear_error();
  t->ctx_ = SSL_CTX_new(side == Side::kServer ? TLS_server_method() : TLS_client_method());
  if (t->ctx_ == nullptr) return fail("cannot create TLS context: " + tls_errors());
  SSL_CTX* c = t->ctx_;
  SSL_CTX_set_app_data(c, t.get());
  link_options(c);
  // No SSL_MODE_RELEASE_BUFFERS here: a link is one long-lived connection whose
  // 64 KiB read-ahead buffer would be freed and reallocated on every record.
  if (!tls_conn_init()) return fail("cannot create the TLS connection BIO: " + tls_errors());

  auto own_pin = load_identity(c, m.cert_pem, m.key_pem);
  if (!own_pin) return own_pin.error();
  t->own_pin_ = std::move(own_pin).value();

  if (auto r = load_anchors(c, m.ca_pem); !r) return r.error();

  SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_callback);
  if (side == Side::kClient && !verify_name.empty()) {
    X509_VERIFY_PARAM* vp = SSL_CTX_get0_param(c);
    const int rc = is_ip(verify_name) ? X509_VERIFY_PARAM_set1_ip_asc(vp, verify_name.c_str())
                                      : X509_VERIFY_PARAM_set1_host(vp, verify_name.c_str(), 0);
    if (rc != 1) return fail("bad broker name to verify: " + verify_name);
  }
  return t;
}

Result<std::unique_ptr<TlsContext>> TlsContext::create_beacon(const Material& m) {
  std::unique_ptr<TlsContext> t(new TlsContext());
  t->side_ = Side::kClient;
  t->pins_ = m.beacon_pins;
  ERR_clear_error();
  t->ctx_ = SSL_CTX_new(TLS_client_method());
  if (t->ctx_ == nullptr) return fail("cannot create TLS context: " + tls_errors());
  SSL_CTX* c = t->ctx_;
  SSL_CTX_set_app_data(c, t.get());
  link_options(c);
  if (!tls_conn_init()) return fail("cannot create the TLS connection BIO: " + tls_errors());
  // The beacon relays only what is already the link's TLS: its certificate
  // (CA, serverAuth, optional pins) is checked so that a stranger cannot
  // collect the preambles, not to protect the link.
  if (auto r = load_anchors(c, m.beacon_ca_pem); !r) return fail("beacon " + r.what());
  // For a beacon that requires a client certificate (its --client-ca).
  if (!m.beacon_cert_pem.empty()) {
    auto pin = load_identity(c, m.beacon_cert_pem, m.beacon_key_pem);
    if (!pin) return fail("--beacon-cert/--beacon-key: " + pin.what());
  }
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_callback);
  static const unsigned char kAlpn[] =
      "\x13"
      "cloudtaser-beacon/1";
  if (SSL_CTX_set_alpn_protos(c, kAlpn, sizeof kAlpn - 1) != 0)
    return fail("cannot set ALPN: " + tls_errors());
  return t;
}

Result<std::unique_ptr<TlsContext>> TlsContext::create_service(const std::string& cert_pem,
                                                               const std::string& key_pem) {
  std::unique_ptr<TlsContext> t(new TlsContext());
  t->side_ = Side::kServer;
  ERR_clear_error();
  t->ctx_ = SSL_CTX_new(TLS_server_method());
  if (t->ctx_ == nullptr) return fail("cannot create TLS context: " + tls_errors());
  SSL_CTX* c = t->ctx_;
  // Wrappers are OpenBao clients: TLS 1.2 or 1.3, no client certificate (their
  // OpenBao token authenticates them), no renegotiation, no 0-RTT.
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(
      c, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  SSL_CTX_set_max_early_data(c, 0);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  auto own_pin = load_identity(c, cert_pem, key_pem);
  if (!own_pin) return own_pin.error();
  t->own_pin_ = std::move(own_pin).value();
  return t;
}

Result<std::unique_ptr<TlsContext>> TlsContext::create_upstream(const std::string& ca_pem) {
  std::unique_ptr<TlsContext> t(new TlsContext());
  t->side_ = Side::kClient;
  ERR_clear_error();
  t->ctx_ = SSL_CTX_new(TLS_client_method());
  if (t->ctx_ == nullptr) return fail("cannot create TLS context: " + tls_errors());
  SSL_CTX* c = t->ctx_;
  // OpenBao's listener: TLS 1.2 at least (its own default minimum), one short
  // exchange per probe, so no session reuse, no renegotiation, no 0-RTT.
  SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  if (auto r = load_anchors(c, ca_pem); !r) return r.error();
  // OpenSSL's default verification, which a failure ends the handshake with;
  // as a client it also requires the serverAuth purpose of the leaf.
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  return t;
}

TlsContext::~TlsContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

}  // namespace ct
