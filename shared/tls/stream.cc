#include "shared/tls/stream.h"

#include <openssl/err.h>

#include "shared/tls/context.h"

namespace ct {

TlsStreamServer::TlsStreamServer(std::shared_ptr<const void> keep, SSL_CTX* ctx)
    : keep_(std::move(keep)) {
  ssl_ = SSL_new(ctx);
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  if (ssl_ == nullptr || rbio_ == nullptr || wbio_ == nullptr) {
    if (ssl_ == nullptr) {
      if (rbio_ != nullptr) BIO_free(rbio_);
      if (wbio_ != nullptr) BIO_free(wbio_);
    }
    fail("out of memory creating wrapper TLS state");
    return;
  }
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
  SSL_set_accept_state(ssl_);
}

TlsStreamServer::~TlsStreamServer() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

void TlsStreamServer::fail(std::string why) {
  if (failed_) return;
  failed_ = true;
  error_ = std::move(why);
}

void TlsStreamServer::put_outer(Bytes in) {
  if (failed_ || in.empty()) return;
  if (BIO_write(rbio_, in.data(), static_cast<int>(in.size())) != static_cast<int>(in.size()))
    return fail("out of memory buffering wrapper TLS records");
  fed_ += in.size();
}

uint64_t TlsStreamServer::outer_consumed() const {
  if (failed_ || rbio_ == nullptr) return fed_;  // nothing more will be read: all of it is spent
  return fed_ - BIO_ctrl_pending(rbio_);
}

bool TlsStreamServer::outer_drained() const {
  if (failed_ || ssl_ == nullptr) return true;
  return BIO_ctrl_pending(rbio_) == 0 && SSL_pending(ssl_) == 0;
}

size_t TlsStreamServer::take_inner(std::span<uint8_t> out) {
  if (failed_ || clean_close_) return 0;
  ERR_clear_error();
  if (!established_) {
    const int r = SSL_do_handshake(ssl_);
    move_cipher_out();
    if (r != 1) {
      const int e = SSL_get_error(ssl_, r);
      if (e != SSL_ERROR_WANT_READ) fail("wrapper TLS handshake failed: " + tls_errors());
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
      fail("wrapper TLS record error: " + tls_errors());
    break;
  }
  move_cipher_out();
  return total;
}

bool TlsStreamServer::put_inner(Bytes in) {
  if (failed_) return true;  // swallowed: the stream is being reset
  if (!established_) return false;
  while (!in.empty()) {
    size_t n = 0;
    ERR_clear_error();
    if (SSL_write_ex(ssl_, in.data(), in.size(), &n) != 1) {
      fail("wrapper TLS write failed: " + tls_errors());
      return true;
    }
    in = in.subspan(n);
  }
  move_cipher_out();
  return true;
}

void TlsStreamServer::outer_sent(size_t n) {
  cipher_pos_ += n;
  if (cipher_pos_ >= cipher_.size()) {
    cipher_.clear();
    cipher_pos_ = 0;
  }
}

void TlsStreamServer::close_inner() {
  if (failed_ || !established_) return;
  SSL_shutdown(ssl_);  // close_notify
  move_cipher_out();
}

void TlsStreamServer::move_cipher_out() {
  const size_t pending = BIO_ctrl_pending(wbio_);
  if (pending == 0) return;
  const size_t at = cipher_.size();
  cipher_.resize(at + pending);
  const int n = BIO_read(wbio_, cipher_.data() + at, static_cast<int>(pending));
  cipher_.resize(at + static_cast<size_t>(n > 0 ? n : 0));
}

}  // namespace ct
