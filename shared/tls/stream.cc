#include "shared/tls/stream.h"

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "shared/os/net.h"
#include "shared/tls/context.h"

namespace ct {

TlsStream::TlsStream(std::shared_ptr<const void> keep, SSL_CTX* ctx) : keep_(std::move(keep)) {
  ssl_ = SSL_new(ctx);
  if (!make_ssl()) return;
  SSL_set_accept_state(ssl_);
}

TlsStream::TlsStream(std::shared_ptr<const void> keep, SSL_CTX* ctx, const std::string& name)
    : keep_(std::move(keep)), client_(true), what_("OpenBao TLS") {
  ssl_ = SSL_new(ctx);
  if (!make_ssl()) return;
  ERR_clear_error();
  // The name is checked during the handshake, by OpenSSL's own verification
  // (which ends it on a mismatch): never an unverified connection.
  bool named;
  if (is_ip_literal(name)) {
    named = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), name.c_str()) == 1;
  } else {
    SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    named = !name.empty() && SSL_set1_host(ssl_, name.c_str()) == 1 &&
            // SNI (SSL_set_tlsext_host_name, spelled out: the macro has a C cast).
            SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
                     const_cast<char*>(name.c_str())) == 1;
  }
  if (!named) {
    fail("cannot verify the name '" + name + "': " + tls_errors());
    return;
  }
  SSL_set_connect_state(ssl_);
  const int r = SSL_do_handshake(ssl_);  // the ClientHello
  move_cipher_out();
  if (r != 1 && SSL_get_error(ssl_, r) != SSL_ERROR_WANT_READ) fail(handshake_error());
}

bool TlsStream::make_ssl() {
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || rbio_ == nullptr || wbio_ == nullptr) {
    if (ssl_ == nullptr) {
      if (rbio_ != nullptr) BIO_free(rbio_);
      if (wbio_ != nullptr) BIO_free(wbio_);
      rbio_ = wbio_ = nullptr;
    }
    fail(std::string("out of memory creating ") + what_ + " state");
    return false;
  }
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
  return true;
}

TlsStream::~TlsStream() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

std::string TlsStream::handshake_error() {
  std::string why = std::string(what_) + " handshake failed: ";
  const long v = SSL_get_verify_result(ssl_);
  if (client_ && v != X509_V_OK)
    why += std::string("certificate verify failed: ") + X509_verify_cert_error_string(v) + "; ";
  return why + tls_errors();
}

void TlsStream::fail(std::string why) {
  if (failed_) return;
  failed_ = true;
  error_ = std::move(why);
}

void TlsStream::put_outer(Bytes in) {
  if (failed_ || in.empty()) return;
  if (BIO_write(rbio_, in.data(), static_cast<int>(in.size())) != static_cast<int>(in.size()))
    return fail(std::string("out of memory buffering ") + what_ + " records");
  fed_ += in.size();
}

uint64_t TlsStream::outer_consumed() const {
  if (failed_ || rbio_ == nullptr) return fed_;  // nothing more will be read: all of it is spent
  return fed_ - BIO_ctrl_pending(rbio_);
}

bool TlsStream::outer_drained() const {
  if (failed_ || ssl_ == nullptr) return true;
  return BIO_ctrl_pending(rbio_) == 0 && SSL_pending(ssl_) == 0;
}

size_t TlsStream::take_inner(std::span<uint8_t> out) {
  if (failed_ || clean_close_) return 0;
  ERR_clear_error();
  if (!established_) {
    const int r = SSL_do_handshake(ssl_);
    move_cipher_out();
    if (r != 1) {
      const int e = SSL_get_error(ssl_, r);
      if (e != SSL_ERROR_WANT_READ) fail(handshake_error());
      return 0;
    }
    established_ = true;
  }
  size_t total = 0;
  while (total < out.size()) {
    size_t n = 0;
    const int r = SSL_read_ex(ssl_, out.data() + total, out.size() - total, &n);
    if (r == 1) {
      total += n;
      continue;
    }
    const int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_ZERO_RETURN)
      clean_close_ = true;
    else if (e != SSL_ERROR_WANT_READ)
      fail(std::string(what_) + " record error: " + tls_errors());
    break;
  }
  move_cipher_out();
  return total;
}

bool TlsStream::put_inner(Bytes in) {
  if (failed_) return true;  // swallowed: the stream is being reset
  if (!established_) return false;
  while (!in.empty()) {
    size_t n = 0;
    ERR_clear_error();
    if (SSL_write_ex(ssl_, in.data(), in.size(), &n) != 1) {
      fail(std::string(what_) + " write failed: " + tls_errors());
      return true;
    }
    in = in.subspan(n);
  }
  move_cipher_out();
  return true;
}

void TlsStream::outer_sent(size_t n) {
  cipher_pos_ += n;
  if (cipher_pos_ >= cipher_.size()) {
    cipher_.clear();
    cipher_pos_ = 0;
  }
}

void TlsStream::close_inner() {
  if (failed_ || !established_) return;
  SSL_shutdown(ssl_);  // close_notify
  move_cipher_out();
}

void TlsStream::move_cipher_out() {
  const size_t pending = BIO_ctrl_pending(wbio_);
  if (pending == 0) return;
  const size_t at = cipher_.size();
  cipher_.resize(at + pending);
  const int n = BIO_read(wbio_, cipher_.data() + at, static_cast<int>(pending));
  cipher_.resize(at + static_cast<size_t>(n > 0 ? n : 0));
}

std::string TlsStream::server_name() const {
  if (!established_ || client_ || ssl_ == nullptr) return {};
  const char* n = SSL_get_servername(ssl_, TLSEXT_NAMETYPE_host_name);
  return n != nullptr ? std::string(n) : std::string();
}

}  // namespace ct
