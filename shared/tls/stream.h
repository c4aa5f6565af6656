// TLS on one stream, memory BIOs only (no socket): ciphertext in and out on
// the outer side, plaintext in and out on the inner side. Two uses in the
// bridge's TLS process:
//  - a server: wrapper TLS ending here (--service-cert); outer is the
//    broker link, inner the stream to OpenBao;
//  - a client: the health probe's TLS to an https:// --vault-addr
//    (--vault-ca); outer is the data-channel stream the forwarding process
//    carries to OpenBao unchanged, inner the probe's request and answer.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "shared/stream/relay.h"

namespace ct {

class TlsStream final : public StreamCodec {
 public:
  // A server. `keep` keeps the context (and what owns it) alive across reloads.
  TlsStream(std::shared_ptr<const void> keep, SSL_CTX* ctx);
  // A client (TlsContext::create_upstream) that requires the server's
  // certificate to carry `name` (an IP SAN when it is an IP address, a DNS
  // name otherwise, which is also sent as SNI). Its ClientHello is ready in
  // outer_pending() at once; a `name` OpenSSL refuses fails it at once.
  TlsStream(std::shared_ptr<const void> keep, SSL_CTX* ctx, const std::string& name);
  ~TlsStream() override;
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  void put_outer(Bytes in) override;
  uint64_t outer_consumed() const override;
  size_t take_inner(std::span<uint8_t> out) override;
  bool put_inner(Bytes in) override;
  Bytes outer_pending() const override { return Bytes(cipher_).subspan(cipher_pos_); }
  void outer_sent(size_t n) override;
  void close_inner() override;
  bool inner_eof() const override { return clean_close_; }
  bool outer_drained() const override;
  bool established() const override { return established_; }
  bool failed() const override { return failed_; }
  const std::string& error() const override { return error_; }
  // A server: the SNI of the ClientHello, once established (empty: none).
  std::string server_name() const override;

 private:
  bool make_ssl();
  void move_cipher_out();
  void fail(std::string why);
  // The handshake failed: why, in one line (the verification error first).
  std::string handshake_error();
  std::shared_ptr<const void> keep_;
  SSL* ssl_ = nullptr;
  BIO* rbio_ = nullptr;
  BIO* wbio_ = nullptr;
  uint64_t fed_ = 0;
  std::vector<uint8_t> cipher_;
  size_t cipher_pos_ = 0;
  bool established_ = false;
  bool clean_close_ = false;
  bool failed_ = false;
  bool client_ = false;
  const char* what_ = "wrapper TLS";  // names the connection in errors
  std::string error_;
};

}  // namespace ct
