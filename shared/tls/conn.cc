#include "shared/tls/conn.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "shared/tls/context.h"

namespace ct {

namespace {
// OpenSSL reads this much per read() when the socket has it (read-ahead): four
// full records, so a bulk transfer costs one syscall per 64 KiB, not two per
// record (header, then body).
constexpr size_t kTlsReadAhead = 64 * 1024;
}  // namespace

// The BIO that joins OpenSSL to a TlsConn. Its data pointer is the TlsConn.
struct TlsConnBio {
  static int read_ex(BIO* b, char* buf, size_t len, size_t* got) {
    return static_cast<TlsConn*>(BIO_get_data(b))->bio_read(b, buf, len, got);
  }
  static int write_ex(BIO* b, const char* buf, size_t len, size_t* put) {
    static_cast<TlsConn*>(BIO_get_data(b))->bio_write(buf, len);
    *put = len;
    return 1;
  }
  static long ctrl(BIO*, int cmd, long, void*) {
    // Records are in our buffer as soon as they are written: flushing is
    // TlsConn::flush()'s job. Everything else (kTLS, push/pop) is unsupported.
    return cmd == BIO_CTRL_FLUSH ? 1 : 0;
  }
  static int create(BIO* b) {
    BIO_set_init(b, 1);
    return 1;
  }
  static BIO_METHOD* method() {
    // Built on first use, which is TlsContext creation (tls_context.cc), before
    // any sandbox is entered.
    static BIO_METHOD* const m = [] {
      BIO_METHOD* bm = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "cloudtaser-conn");
      if (bm != nullptr) {
        BIO_meth_set_read_ex(bm, read_ex);
        BIO_meth_set_write_ex(bm, write_ex);
        BIO_meth_set_ctrl(bm, ctrl);
        BIO_meth_set_create(bm, create);
      }
      return bm;
    }();
    return m;
  }
};

bool tls_conn_init() {
  return TlsConnBio::method() != nullptr;
}

TlsConn::TlsConn(SSL_CTX* ctx, UniqueFd fd, bool server, const std::string& sni)
    : fd_(std::move(fd)) {
  setup(ctx, server, sni);
}

TlsConn::TlsConn(SSL_CTX* ctx, TlsConn& outer, bool server, const std::string& sni)
    : outer_(&outer) {
  setup(ctx, server, sni);
}

void TlsConn::setup(SSL_CTX* ctx, bool server, const std::string& sni) {
  ssl_ = SSL_new(ctx);
  BIO* bio = TlsConnBio::method() != nullptr ? BIO_new(TlsConnBio::method()) : nullptr;
  if (ssl_ == nullptr || bio == nullptr) {
    if (bio != nullptr) BIO_free(bio);
    fail("out of memory creating TLS state");
    return;
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // one reference, owned by ssl_
  SSL_set_read_ahead(ssl_, 1);
  SSL_set_default_read_buffer_len(ssl_, kTlsReadAhead);
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

bool TlsConn::verify_peer_name(const std::string& name) {
  if (ssl_ == nullptr) return false;
  unsigned char buf[16];
  const bool ip =
      inet_pton(AF_INET, name.c_str(), buf) == 1 || inet_pton(AF_INET6, name.c_str(), buf) == 1;
  X509_VERIFY_PARAM* vp = SSL_get0_param(ssl_);
  return (ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, name.c_str())
             : X509_VERIFY_PARAM_set1_host(vp, name.c_str(), 0)) == 1;
}

TlsConn::~TlsConn() {
  if (ssl_ != nullptr) SSL_free(ssl_);
}

void TlsConn::fail(std::string why) {
  if (failed_) return;
  failed_ = true;
  error_ = std::move(why);
}

int TlsConn::bio_read(BIO* b, char* buf, size_t len, size_t* got) {
  BIO_clear_retry_flags(b);
  *got = 0;
  if (outer_ != nullptr) {
    // The outer session's plaintext is this one's ciphertext; the outer
    // TlsConn keeps to the socket's read budget.
    if (eof_ || failed_) {
      if (!failed_) BIO_set_retry_read(b);
      return 0;
    }
    const size_t n = outer_->read_plain(std::span<uint8_t>(reinterpret_cast<uint8_t*>(buf), len));
    if (n > 0) {
      *got = n;
      return 1;
    }
    if (outer_->failed()) {
      fail("beacon session: " + outer_->error());
      return 0;
    }
    if (outer_->eof()) eof_ = true;  // reported by eof(), as a socket's EOF is
    BIO_set_retry_read(b);
    return 0;
  }
  // Out of budget, or the socket already ended: "no more for now". EOF is
  // reported by eof(), never through OpenSSL, so a FIN without close_notify
  // is told apart from a clean close by TlsLink (T-14), as before.
  if (read_budget_ == 0 || eof_ || failed_) {
    if (!failed_) BIO_set_retry_read(b);
    return 0;
  }
  const size_t want = std::min(len, read_budget_);
  const ssize_t n = ::read(fd_.get(), buf, want);
  if (n > 0) {
    // A short read emptied the socket: no more reads this wake-up (the next
    // would only say EAGAIN); level-triggered epoll reports what comes later.
    read_budget_ = static_cast<size_t>(n) < want ? 0 : read_budget_ - static_cast<size_t>(n);
    *got = static_cast<size_t>(n);
    return 1;
  }
  if (n == 0) {
    eof_ = true;
    BIO_set_retry_read(b);
    return 0;
  }
  if (errno == EAGAIN || errno == EINTR) {
    BIO_set_retry_read(b);
    return 0;
  }
  fail(std::string("read: ") + std::strerror(errno));
  return 0;
}

void TlsConn::bio_write(const char* buf, size_t len) {
  if (cipher_pos_ > 0 && cipher_pos_ == cipher_.size()) {
    cipher_.clear();
    cipher_pos_ = 0;
  }
  const size_t at = cipher_.size();
  cipher_.resize(at + len);
  std::memcpy(cipher_.data() + at, buf, len);
}

bool TlsConn::handshake() {
  if (established_) return true;
  if (failed_ || ssl_ == nullptr) return false;
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
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
      // Nothing left in OpenSSL's buffer and nothing more the socket gives
      // this wake-up: another SSL_read_ex would only end in WANT_READ (and
      // cost an error-queue clear and SSL_get_error on the way).
      if (!SSL_has_pending(ssl_) && source_dry()) break;
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
  return true;
}

bool TlsConn::flush() {
  if (outer_ != nullptr) {
    // Hand the records to the outer session, which encrypts them again and
    // owns the socket (and its back-pressure: pending_cipher() counts both).
    if (cipher_pos_ < cipher_.size()) {
      const Bytes rec(cipher_.data() + cipher_pos_, cipher_.size() - cipher_pos_);
      if (!outer_->write_plain(rec)) {
        fail("beacon session: " + outer_->error());
        return false;
      }
      cipher_.clear();
      cipher_pos_ = 0;
    }
    if (!outer_->flush()) {
      fail("beacon session: " + outer_->error());
      return false;
    }
    return true;
  }
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
  flush();
  if (outer_ != nullptr) outer_->shutdown();
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
