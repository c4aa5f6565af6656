// A growable byte buffer that never zero-fills: std::vector::resize writes
// every new byte, which for a 256 KiB read buffer refilled on every read was a
// measurable share of the bulk path (make bench profile). Bytes past size()
// are uninitialised; callers only ever read what they wrote.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>

namespace ct {

class RawBuffer {
 public:
  uint8_t* data() { return p_.get(); }
  const uint8_t* data() const { return p_.get(); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  // Sets the size; growing keeps the existing bytes and leaves the new ones
  // uninitialised.
  void resize(size_t n) {
    if (n > cap_) {
      size_t cap = cap_ == 0 ? 4096 : cap_;
      while (cap < n) cap *= 2;
      std::unique_ptr<uint8_t[]> q(new uint8_t[cap]);  // default-initialised: not zeroed
      if (size_ > 0) std::memcpy(q.get(), p_.get(), size_);
      p_ = std::move(q);
      cap_ = cap;
    }
    size_ = n;
  }
  // Drops the first n bytes (the rest moves to the front).
  void erase_front(size_t n) {
    if (n >= size_) {
      size_ = 0;
      return;
    }
    std::memmove(p_.get(), p_.get() + n, size_ - n);
    size_ -= n;
  }
  void clear() { size_ = 0; }

 private:
  std::unique_ptr<uint8_t[]> p_;
  size_t size_ = 0;
  size_t cap_ = 0;
};

}  // namespace ct
