// Helpers shared by the fuzz targets.
//
// FuzzInput is a FuzzedDataProvider-like reader of our own: the targets are
// also built with g++ for corpus replay (make fuzz-replay), where clang's
// <fuzzer/FuzzedDataProvider.h> is not on the include path. It reads from the
// front of the input; once the input is used up every read yields zero, so any
// byte string decodes to some action sequence (and a short input ends early
// through empty()).
//
// FZ_CHECK is the oracle's assertion: a violated invariant is a finding, so it
// prints what broke and aborts, which libFuzzer and the replay main both turn
// into a failure with the input saved.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "shared/base/bytes.h"

#define FZ_CHECK(cond, ...)                                                        \
  do {                                                                             \
    if (!(cond)) [[unlikely]] {                                                    \
      std::fprintf(stderr, "fuzz oracle: %s:%d: %s: ", __FILE__, __LINE__, #cond); \
      std::fprintf(stderr, __VA_ARGS__);                                           \
      std::fprintf(stderr, "\n");                                                  \
      std::abort();                                                                \
    }                                                                              \
  } while (0)

namespace ct::fuzz {

class FuzzInput {
 public:
  explicit FuzzInput(Bytes in) : in_(in) {}

  bool empty() const { return pos_ >= in_.size(); }
  size_t remaining() const { return in_.size() - pos_; }

  uint8_t u8() { return pos_ < in_.size() ? in_[pos_++] : 0; }
  uint16_t u16() {
    const uint16_t hi = u8();  // two statements: operand order is unspecified
    return static_cast<uint16_t>((hi << 8) | u8());
  }
  uint32_t u32() {
    const uint32_t hi = u16();
    return (hi << 16) | u16();
  }
  uint64_t u64() {
    const uint64_t hi = u32();
    return (hi << 32) | u32();
  }
  bool boolean() { return (u8() & 1) != 0; }
  // One of the n entries of a table (n > 0).
  template <typename T, size_t N>
  T pick(const T (&table)[N]) {
    return table[u8() % N];
  }
  // Up to n bytes (fewer when the input runs out).
  Bytes bytes(size_t n) {
    const size_t k = n < remaining() ? n : remaining();
    Bytes b = in_.subspan(pos_, k);
    pos_ += k;
    return b;
  }
  Bytes rest() { return bytes(remaining()); }

 private:
  Bytes in_;
  size_t pos_ = 0;
};

}  // namespace ct::fuzz
