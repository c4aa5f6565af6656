// One TLS connection over a non-blocking socket, with memory BIOs on both
// sides: we decide when the socket is read and written, so the ciphertext of
// many streams' frames leaves in one write() (coalescing), and OpenSSL never
// sees the fd (it cannot block or signal).
#pragma once

#include <openssl/ssl.h>

#include <string>
#include <vector>

#include "shared/bytes.h"
#include "shared/raw_buffer.h"
#include "shared/unique_fd.h"

namespace ct {

class TlsConn {
 public:
  TlsConn(SSL_CTX* ctx, UniqueFd fd, bool server, const std::string& sni);
  ~TlsConn();
  TlsConn(const TlsConn&) = delete;
  TlsConn& operator=(const TlsConn&) = delete;

  int fd() const { return fd_.get(); }
  // Reads what the socket has (up to `budget` bytes) into the TLS engine.
  // False once the socket hit EOF or an error (see eof()/failed()).
  bool read_socket(size_t budget);
  // Advances the handshake. true when complete; check failed() otherwise.
  bool handshake();
  bool established() const { return established_; }
  // Decrypts into `out`; returns bytes written (0: nothing more now).
  size_t read_plain(std::span<uint8_t> out);
  // Encrypts `in` into the pending ciphertext (never blocks).
  bool write_plain(Bytes in);
  // Writes pending ciphertext to the socket; false on a fatal error.
  bool flush();
  size_t pending_cipher() const { return cipher_.size() - cipher_pos_; }
  // Sends close_notify (best effort, then flush).
  void shutdown();

  bool eof() const { return eof_; }
  bool failed() const { return failed_; }
  // The peer sent close_notify before EOF (a clean close, not a truncation).
  bool closed_cleanly() const { return clean_close_; }
  const std::string& error() const { return error_; }
  // Peer certificate subject, for logs.
  std::string peer_subject() const;

 private:
  void move_cipher_out();
  void fail(std::string why);
  UniqueFd fd_;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;  // owned by ssl_
  BIO* wbio_ = nullptr;  // owned by ssl_
  RawBuffer cipher_;     // ciphertext not yet written to the socket
  size_t cipher_pos_ = 0;
  bool established_ = false;
  bool eof_ = false;
  bool failed_ = false;
  bool clean_close_ = false;
  std::string error_;
};

}  // namespace ct
