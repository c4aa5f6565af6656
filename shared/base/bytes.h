// Bounds-checked parse and emit of wire bytes. Every parser and encoder in the
// project goes through these two types; nothing else does pointer arithmetic,
// memcpy or casts on bytes that came from a peer.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace ct {

using Bytes = std::span<const uint8_t>;

// Reads big-endian integers and byte runs from a fixed span. A read past the
// end never touches memory: it sets the sticky failure flag and returns zero.
// Callers check ok() (or finish()) once after a group of reads.
class ByteReader {
 public:
  explicit ByteReader(Bytes b) : b_(b) {}

  uint8_t u8() {
    if (!need(1)) return 0;
    return b_[pos_++];
  }
  uint16_t u16() {
    if (!need(2)) return 0;
    uint16_t v = static_cast<uint16_t>((b_[pos_] << 8) | b_[pos_ + 1]);
    pos_ += 2;
    return v;
  }
  uint32_t u32() {
    if (!need(4)) return 0;
    uint32_t v = (uint32_t{b_[pos_]} << 24) | (uint32_t{b_[pos_ + 1]} << 16) |
                 (uint32_t{b_[pos_ + 2]} << 8) | uint32_t{b_[pos_ + 3]};
    pos_ += 4;
    return v;
  }
  uint64_t u64() {
    // Checked as a whole: two u32 reads would return the high half when only
    // the low half is missing, against the "returns zero" contract above.
    if (!need(8)) return 0;
    uint64_t hi = u32();
    return (hi << 32) | u32();
  }
  // A view of the next n bytes (empty on failure). Valid as long as the
  // underlying buffer is.
  Bytes bytes(size_t n) {
    if (!need(n)) return {};
    Bytes v = b_.subspan(pos_, n);
    pos_ += n;
    return v;
  }
  std::string_view str(size_t n) {
    Bytes v = bytes(n);
    return {reinterpret_cast<const char*>(v.data()), v.size()};
  }
  // Copies exactly out.size() bytes.
  void copy_to(std::span<uint8_t> out) {
    Bytes v = bytes(out.size());
    if (!v.empty()) std::memcpy(out.data(), v.data(), v.size());
  }
  void skip(size_t n) { (void)bytes(n); }

  size_t remaining() const { return failed_ ? 0 : b_.size() - pos_; }
  size_t position() const { return pos_; }
  bool ok() const { return !failed_; }
  // True when every byte was consumed and no read failed: decoders of
  // fixed-layout messages must end with this (a message is consumed exactly).
  bool finish() const { return !failed_ && pos_ == b_.size(); }

 private:
  bool need(size_t n) {
    if (failed_ || n > b_.size() - pos_) {
      failed_ = true;
      return false;
    }
    return true;
  }
  Bytes b_;
  size_t pos_ = 0;
  bool failed_ = false;
};

// Appends big-endian integers and byte runs to a growable buffer, refusing to
// grow it beyond a cap fixed at construction (sticky failure, like ByteReader).
class ByteWriter {
 public:
  ByteWriter(std::vector<uint8_t>& out, size_t cap) : out_(out), cap_(cap) {}

  void u8(uint8_t v) {
    if (room(1)) out_.push_back(v);
  }
  // Every write is all or nothing: a u16 or u64 that does not fit leaves no
  // partial bytes behind (as u32 always did).
  void u16(uint16_t v) {
    if (!room(2)) return;
    out_.push_back(static_cast<uint8_t>(v >> 8));
    out_.push_back(static_cast<uint8_t>(v));
  }
  void u32(uint32_t v) {
    if (!room(4)) return;
    const uint8_t b[4] = {static_cast<uint8_t>(v >> 24), static_cast<uint8_t>(v >> 16),
                          static_cast<uint8_t>(v >> 8), static_cast<uint8_t>(v)};
    out_.insert(out_.end(), b, b + 4);
  }
  void u64(uint64_t v) {
    if (!room(8)) return;
    u32(static_cast<uint32_t>(v >> 32));
    u32(static_cast<uint32_t>(v));
  }
  void bytes(Bytes b) {
    if (room(b.size())) out_.insert(out_.end(), b.begin(), b.end());
  }
  void str(std::string_view s) {
    bytes(Bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }
  // Overwrites 4 bytes at an earlier offset (length fields written last).
  void patch_u32(size_t at, uint32_t v) {
    if (failed_ || at > out_.size() || out_.size() - at < 4) {
      failed_ = true;
      return;
    }
    out_[at] = static_cast<uint8_t>(v >> 24);
    out_[at + 1] = static_cast<uint8_t>(v >> 16);
    out_[at + 2] = static_cast<uint8_t>(v >> 8);
    out_[at + 3] = static_cast<uint8_t>(v);
  }
  size_t size() const { return out_.size(); }
  bool ok() const { return !failed_; }

 private:
  bool room(size_t n) {
    if (failed_ || n > cap_ || out_.size() > cap_ - n) {
      failed_ = true;
      return false;
    }
    return true;
  }
  std::vector<uint8_t>& out_;
  size_t cap_;
  bool failed_ = false;
};

inline Bytes as_bytes(std::string_view s) {
  return Bytes(reinterpret_cast<const uint8_t*>(s.data()), s.size());
}

}  // namespace ct
