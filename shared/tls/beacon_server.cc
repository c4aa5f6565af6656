#include "shared/tls/beacon_server.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <cstring>

#include "shared/tls/context.h"

namespace ct {

namespace {

// The ALPN wire form of kBeaconAlpn: one length byte, then the name.
bool offers_beacon(const unsigned char* in, unsigned int len) {
  unsigned int i = 0;
  while (i < len) {
    const unsigned int n = in[i];
    if (i + 1 + n > len) return false;
    if (n == kBeaconAlpn.size() && std::memcmp(in + i + 1, kBeaconAlpn.data(), n) == 0) return true;
    i += 1 + n;
  }
  return false;
}

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void*) {
  if (!offers_beacon(in, inlen)) return SSL_TLSEXT_ERR_ALERT_FATAL;
  *out = reinterpret_cast<const unsigned char*>(kBeaconAlpn.data());
  *outlen = static_cast<unsigned char>(kBeaconAlpn.size());
  return SSL_TLSEXT_ERR_OK;
}

// A ClientHello without ALPN never reaches select_alpn: refused here, with
// the alert TLS defines for it, before the server says anything.
int require_alpn(SSL* s, int* alert, void*) {
  const unsigned char* ext = nullptr;
  size_t len = 0;
  if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_application_layer_protocol_negotiation, &ext,
                                &len) == 1)
    return SSL_CLIENT_HELLO_SUCCESS;
  *alert = SSL_AD_NO_APPLICATION_PROTOCOL;
  return SSL_CLIENT_HELLO_ERROR;
}

int no_passphrase(char*, int, int, void*) {
  return -1;
}

}  // namespace

Result<std::unique_ptr<BeaconServerContext>> BeaconServerContext::create(const Material& m) {
  std::unique_ptr<BeaconServerContext> t(new BeaconServerContext());
  ERR_clear_error();
  t->ctx_ = SSL_CTX_new(TLS_server_method());
  if (t->ctx_ == nullptr) return fail("cannot create TLS context: " + tls_errors());
  SSL_CTX* c = t->ctx_;
  SSL_CTX_set_min_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(c, TLS1_3_VERSION);
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(c, 0);
  SSL_CTX_set_max_early_data(c, 0);
  // Thousands of waiting connections sit idle: their read buffers are freed
  // while empty instead of holding 64 KiB each.
  SSL_CTX_set_mode(c, SSL_MODE_RELEASE_BUFFERS);
  if (!tls_conn_init()) return fail("cannot create the TLS connection BIO: " + tls_errors());
  SSL_CTX_set_client_hello_cb(c, require_alpn, nullptr);
  SSL_CTX_set_alpn_select_cb(c, select_alpn, nullptr);
  auto own_pin = load_identity(c, m.cert_pem, m.key_pem);
  if (!own_pin) return own_pin.error();
  t->own_pin_ = std::move(own_pin).value();
  if (m.ca_pem.empty()) return t;
  // --client-ca: only this file's CAs, never the system store.
  BIO* ab = BIO_new_mem_buf(m.ca_pem.data(), static_cast<int>(m.ca_pem.size()));
  if (ab == nullptr) return fail("out of memory reading the client CA");
  X509_STORE* store = SSL_CTX_get_cert_store(c);
  int anchors = 0;
  bool not_ca = false;
  while (X509* ca = PEM_read_bio_X509(ab, nullptr, no_passphrase, nullptr)) {
    if ((X509_get_extension_flags(ca) & EXFLAG_CA) == 0)
      not_ca = true;
    else if (X509_STORE_add_cert(store, ca) == 1)
      anchors++;
    X509_free(ca);
  }
  BIO_free(ab);
  ERR_clear_error();
  if (not_ca)
    return fail(
        "client CA file holds a certificate that is not a CA (no basicConstraints CA:TRUE)");
  if (anchors == 0) return fail("client CA file holds no PEM certificate");
  // OpenSSL's default purpose on a server checks the client's EKU (clientAuth
  // or none).
  SSL_CTX_set_verify(c, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, nullptr);
  t->client_auth_ = true;
  return t;
}

BeaconServerContext::~BeaconServerContext() {
  if (ctx_ != nullptr) SSL_CTX_free(ctx_);
}

bool beacon_alpn_agreed(const TlsConn& c) {
  const unsigned char* p = nullptr;
  unsigned int n = 0;
  if (c.ssl() == nullptr) return false;
  SSL_get0_alpn_selected(c.ssl(), &p, &n);
  return n == kBeaconAlpn.size() && std::memcmp(p, kBeaconAlpn.data(), n) == 0;
}

}  // namespace ct
