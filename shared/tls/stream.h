// A TLS server on one stream (wrapper TLS ending in the bridge's TLS
// process, --service-cert): ciphertext in and out on the link side,
// plaintext in and out on the OpenBao side, memory BIOs only.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <vector>

#include "shared/stream/relay.h"

namespace ct {

class TlsStreamServer final : public StreamCodec {
 public:
  // `keep` keeps the context (and what owns it) alive across reloads.
  TlsStreamServer(std::shared_ptr<const void> keep, SSL_CTX* ctx);
  ~TlsStreamServer() override;

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

 private:
  void move_cipher_out();
  void fail(std::string why);
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
  std::string error_;
};

}  // namespace ct
