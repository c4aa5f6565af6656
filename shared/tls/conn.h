// One TLS connection over a non-blocking socket, through a BIO of our own
// (not OpenSSL's socket or memory BIOs):
//  - input: OpenSSL's record layer reads the socket straight into its own
//    buffer (read-ahead, up to kTlsReadAhead per read()), but only as much as
//    the caller allowed for this wake-up (allow_read), so one busy link cannot
//    starve the loop;
//  - output: records are appended to our ciphertext buffer and leave in as few
//    send()s as the socket takes (the frames of many streams in one write).
// A memory BIO pair cost two extra copies of every byte (make bench-bulk's
// profile). OpenSSL never blocks: the socket is non-blocking and EAGAIN is a
// retry.
//
// In beacon mode (docs/beacon.md §1) a connection carries two sessions: the
// outer one with the beacon, on the socket, and the link's own inside it. The
// inner TlsConn is then built over the outer one: its records are the outer
// session's plaintext, read and written through the outer TlsConn, which
// still owns the socket.
#pragma once

#include <openssl/ssl.h>

#include <string>
#include <vector>

#include "shared/base/bytes.h"
#include "shared/base/raw_buffer.h"
#include "shared/base/unique_fd.h"

namespace ct {

// Builds the BIO method once; TlsContext creation calls it before any sandbox.
bool tls_conn_init();

class TlsConn {
 public:
  TlsConn(SSL_CTX* ctx, UniqueFd fd, bool server, const std::string& sni);
  // Inside `outer` (established before this one is driven; outlives it).
  TlsConn(SSL_CTX* ctx, TlsConn& outer, bool server, const std::string& sni);
  ~TlsConn();
  TlsConn(const TlsConn&) = delete;
  TlsConn& operator=(const TlsConn&) = delete;

  // A client: the server's certificate must carry `name` (a DNS name or an
  // IP address). False if OpenSSL refuses the name.
  bool verify_peer_name(const std::string& name);
  int fd() const { return outer_ != nullptr ? outer_->fd() : fd_.get(); }
  // Lets the next handshake()/read_plain() calls read up to `budget` bytes
  // from the socket (the rest waits for the next wake-up).
  void allow_read(size_t budget) {
    read_budget_ = budget;
    if (outer_ != nullptr) outer_->allow_read(budget);
  }
  // Advances the handshake. true when complete; check failed() otherwise.
  bool handshake();
  bool established() const { return established_; }
  // Decrypts into `out`; returns bytes written. Less than out.size() means
  // nothing more now (the caller need not ask again until the next wake-up).
  size_t read_plain(std::span<uint8_t> out);
  // Encrypts `in` into the pending ciphertext (never blocks).
  bool write_plain(Bytes in);
  // Writes pending ciphertext to the socket; false on a fatal error.
  bool flush();
  size_t pending_cipher() const {
    return cipher_.size() - cipher_pos_ + (outer_ != nullptr ? outer_->pending_cipher() : 0);
  }
  // Sends close_notify (best effort, then flush); inside an outer session,
  // that one's too.
  void shutdown();

  bool eof() const { return eof_; }
  bool failed() const { return failed_; }
  // The peer sent close_notify before EOF (a clean close, not a truncation).
  bool closed_cleanly() const { return clean_close_; }
  const std::string& error() const { return error_; }
  // Peer certificate subject, for logs.
  std::string peer_subject() const;
  // For re-checking the peer against reloaded material (TlsContext::peer_trusted).
  SSL* ssl() const { return ssl_; }

 private:
  friend struct TlsConnBio;
  // The socket can give no more ciphertext this wake-up (its read budget is
  // spent by a short read, or it ended). Inside an outer session: unknown,
  // so false (read_plain then asks once more, as it always did).
  bool source_dry() const { return outer_ == nullptr && (read_budget_ == 0 || eof_ || failed_); }
  // The BIO's two directions (see tls_conn.cc).
  int bio_read(BIO* b, char* buf, size_t len, size_t* got);
  void bio_write(const char* buf, size_t len);
  void fail(std::string why);
  void setup(SSL_CTX* ctx, bool server, const std::string& sni);
  UniqueFd fd_;
  TlsConn* outer_ = nullptr;  // beacon mode: the session this one runs in
  SSL* ssl_ = nullptr;
  RawBuffer cipher_;  // ciphertext not yet written to the socket
  size_t cipher_pos_ = 0;
  size_t read_budget_ = 0;
  bool established_ = false;
  bool eof_ = false;
  bool failed_ = false;
  bool clean_close_ = false;
  std::string error_;
};

}  // namespace ct
