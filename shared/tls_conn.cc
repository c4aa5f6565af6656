#include "shared/tls_conn.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "shared/tls_context.h"

namespace ct {

TlsConn::TlsConn(SSL_CTX* ctx, UniqueFd fd, bool server, const std::string& sni)
    : fd_(std::move(fd)) {
  ssl_ = SSL_new(ctx);
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || rbio_ == nullptr || wbio_ == nullptr) {
    fail("out of memory creating TLS state");
    return;
  }
  BIO_set_mem_eof_return(rbio_, -1);  // empty means "want more", not EOF
  SSL_set_bio(ssl_, rbio_, wbio_);
  if (server) {
    SSL_set_accept_state(ssl_);
  } else {
    SSL_set_connect_state(ssl_);
    // SNI (SSL_set_tlsext_host_name, spelled out: the macro has a C cast).
    if (!sni.empty())
      SSL_ctrl(ssl_, SSL_CTRL_SET_TLSEXT_HOSTNAME, TLSEXT_NAMETYPE_host_name,
               const_cast<char*>(sni.c_str()));
  }
}

TlsConn::~TlsConn() {
  if (ssl_ != nullptr)
    SSL_free(ssl_);
  else {
    if (rbio_ != nullptr) BIO_free(rbio_);
    if (wbio_ != nullptr) BIO_free(wbio_);
  }
}

void TlsConn::fail(std::string why) {
  if (failed_) return;
  failed_ = true;
  error_ = std::move(why);
}

bool TlsConn::read_socket(size_t budget) {
  uint8_t buf[64 * 1024];
  while (budget > 0 && !eof_ && !failed_) {
    const ssize_t n = ::read(fd_.get(), buf, std::min(sizeof buf, budget));
    if (n > 0) {
      if (BIO_write(rbio_, buf, static_cast<int>(n)) != n) fail("out of memory buffering input");
      budget -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) {
      eof_ = true;
      break;
    }
    if (errno == EAGAIN || errno == EINTR) return true;
    fail(std::string("read: ") + std::strerror(errno));
  }
  return !eof_ && !failed_;
}

bool TlsConn::handshake() {
  if (established_) return true;
  if (failed_ || ssl_ == nullptr) return false;
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  move_cipher_out();
  if (r == 1) {
    established_ = true;
    return true;
  }
  const int e = SSL_get_error(ssl_, r);
  if (e == SSL_ERROR_WANT_READ) {
    if (eof_) fail("peer closed the connection during the TLS handshake");
    return false;
  }
  const long vr = SSL_get_verify_result(ssl_);
  if (vr != X509_V_OK)
    fail(std::string("certificate verification failed: ") + X509_verify_cert_error_string(vr));
  else
    fail("TLS handshake failed: " + tls_errors());
  return false;
}

size_t TlsConn::read_plain(std::span<uint8_t> out) {
  if (!established_ || failed_) return 0;
  size_t total = 0;
  while (total < out.size()) {
    size_t n = 0;
    ERR_clear_error();
    const int r = SSL_read_ex(ssl_, out.data() + total, out.size() - total, &n);
    if (r == 1) {
      total += n;
      continue;
    }
    const int e = SSL_get_error(ssl_, r);
    if (e == SSL_ERROR_ZERO_RETURN) {
      clean_close_ = true;
      eof_ = true;
    } else if (e != SSL_ERROR_WANT_READ) {
      fail("TLS record error: " + tls_errors());  // bad_record_mac and friends (T-15)
    }
    break;
  }
  move_cipher_out();  // KeyUpdate replies, alerts
  return total;
}

bool TlsConn::write_plain(Bytes in) {
  if (!established_ || failed_) return false;
  while (!in.empty()) {
    size_t n = 0;
    ERR_clear_error();
    if (SSL_write_ex(ssl_, in.data(), in.size(), &n) != 1) {
      fail("TLS write failed: " + tls_errors());
      return false;
    }
    in = in.subspan(n);
  }
  move_cipher_out();
  return true;
}

void TlsConn::move_cipher_out() {
  const size_t pending = BIO_ctrl_pending(wbio_);
  if (pending == 0) return;
  if (cipher_pos_ > 0 && cipher_pos_ == cipher_.size()) {
    cipher_.clear();
    cipher_pos_ = 0;
  }
  const size_t at = cipher_.size();
  cipher_.resize(at + pending);
  const int n = BIO_read(wbio_, cipher_.data() + at, static_cast<int>(pending));
  cipher_.resize(at + static_cast<size_t>(n > 0 ? n : 0));
}

bool TlsConn::flush() {
  while (cipher_pos_ < cipher_.size()) {
    const ssize_t n = ::send(fd_.get(), cipher_.data() + cipher_pos_, cipher_.size() - cipher_pos_,
                             MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      cipher_pos_ += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
    fail(std::string("write: ") + std::strerror(errno));
    return false;
  }
  if (cipher_pos_ == cipher_.size()) {
    cipher_.clear();
    cipher_pos_ = 0;
  } else if (cipher_pos_ > (1u << 20)) {
    cipher_.erase_front(cipher_pos_);
    cipher_pos_ = 0;
  }
  return true;
}

void TlsConn::shutdown() {
  if (ssl_ == nullptr || !established_ || failed_) return;
  SSL_shutdown(ssl_);
  move_cipher_out();
  flush();
}

std::string TlsConn::peer_subject() const {
  if (ssl_ == nullptr) return "";
  X509* peer = SSL_get0_peer_certificate(ssl_);
  if (peer == nullptr) return "";
  char buf[256];
  X509_NAME_oneline(X509_get_subject_name(peer), buf, sizeof buf);
  return buf;
}

}  // namespace ct
