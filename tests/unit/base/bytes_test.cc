// ByteReader / ByteWriter: every read past the end fails without touching
// memory, failure is sticky, finish() demands exact consumption, and a writer
// never grows its buffer beyond its cap.
#include "shared/base/bytes.h"

#include <gtest/gtest.h>

#include <array>
#include <vector>

namespace ct {
namespace {

TEST(ByteReader, ReadsBigEndianIntegers) {
  const std::array<uint8_t, 15> b = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
                                     0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f};
  ByteReader r(b);
  EXPECT_EQ(r.u8(), 0x01);
  EXPECT_EQ(r.u16(), 0x0203);
  EXPECT_EQ(r.u32(), 0x04050607u);
  EXPECT_EQ(r.u64(), 0x08090a0b0c0d0e0full);
  EXPECT_TRUE(r.ok());
  EXPECT_TRUE(r.finish());
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_EQ(r.position(), 15u);
}

TEST(ByteReader, HighBitBytesDoNotSignExtend) {
  const std::array<uint8_t, 8> b = {0xff, 0xfe, 0xff, 0xff, 0xff, 0x80, 0x00, 0x01};
  ByteReader r(b);
  EXPECT_EQ(r.u16(), 0xfffe);
  EXPECT_EQ(r.u32(), 0xffffff80u);
  EXPECT_EQ(r.u16(), 0x0001);
  EXPECT_TRUE(r.finish());
}

// Each read kind, one byte short: fails, returns zero, does not advance.
TEST(ByteReader, EveryReadPastTheEndFails) {
  const std::array<uint8_t, 7> b = {1, 2, 3, 4, 5, 6, 7};
  auto short_by_one = [&](size_t n) { return ByteReader(Bytes(b).first(n)); };
  {
    ByteReader r = short_by_one(0);
    EXPECT_EQ(r.u8(), 0);
    EXPECT_FALSE(r.ok());
  }
  {
    ByteReader r = short_by_one(1);
    EXPECT_EQ(r.u16(), 0);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.position(), 0u);
  }
  {
    ByteReader r = short_by_one(3);
    EXPECT_EQ(r.u32(), 0u);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.position(), 0u);
  }
  {
    // u64 fails as a whole: no half-read value, no half-advanced position.
    ByteReader r = short_by_one(7);
    EXPECT_EQ(r.u64(), 0u);
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.position(), 0u);
    EXPECT_FALSE(r.finish());
  }
  {
    ByteReader r = short_by_one(4);
    Bytes v = r.bytes(5);
    EXPECT_TRUE(v.empty());
    EXPECT_FALSE(r.ok());
  }
  {
    ByteReader r = short_by_one(4);
    EXPECT_TRUE(r.str(5).empty());
    EXPECT_FALSE(r.ok());
  }
  {
    ByteReader r = short_by_one(2);
    r.skip(3);
    EXPECT_FALSE(r.ok());
  }
}

// A huge length (as a peer would put in a length field) must not wrap the
// bounds check: pos + n overflowing size_t would otherwise pass.
TEST(ByteReader, HugeLengthDoesNotWrap) {
  const std::array<uint8_t, 4> b = {1, 2, 3, 4};
  ByteReader r(b);
  EXPECT_EQ(r.u8(), 1);
  EXPECT_TRUE(r.bytes(SIZE_MAX).empty());
  EXPECT_FALSE(r.ok());
  ByteReader r2(b);
  r2.skip(SIZE_MAX - 1);
  EXPECT_FALSE(r2.ok());
}

TEST(ByteReader, CopyToPastEndLeavesDestinationUntouched) {
  const std::array<uint8_t, 3> b = {1, 2, 3};
  std::array<uint8_t, 4> out = {0xaa, 0xaa, 0xaa, 0xaa};
  ByteReader r(b);
  r.copy_to(out);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(out, (std::array<uint8_t, 4>{0xaa, 0xaa, 0xaa, 0xaa}));

  std::array<uint8_t, 3> exact{};
  ByteReader r2(b);
  r2.copy_to(exact);
  EXPECT_TRUE(r2.finish());
  EXPECT_EQ(exact, b);
}

TEST(ByteReader, FailureIsSticky) {
  const std::array<uint8_t, 4> b = {0x11, 0x22, 0x33, 0x44};
  ByteReader r(b);
  EXPECT_EQ(r.u8(), 0x11);
  EXPECT_EQ(r.u32(), 0u);  // 3 bytes left: fails
  EXPECT_FALSE(r.ok());
  // Reads that would fit now still fail and return zero.
  EXPECT_EQ(r.u8(), 0);
  EXPECT_EQ(r.u16(), 0);
  EXPECT_TRUE(r.bytes(1).empty());
  EXPECT_TRUE(r.bytes(0).empty());
  EXPECT_EQ(r.remaining(), 0u);
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(r.finish());
}

TEST(ByteReader, FinishRequiresExactConsumption) {
  const std::array<uint8_t, 3> b = {1, 2, 3};
  ByteReader r(b);
  EXPECT_EQ(r.u16(), 0x0102);
  EXPECT_TRUE(r.ok());
  EXPECT_FALSE(r.finish());  // one byte left over
  EXPECT_EQ(r.remaining(), 1u);
  EXPECT_EQ(r.u8(), 3);
  EXPECT_TRUE(r.finish());

  ByteReader empty{Bytes{}};
  EXPECT_TRUE(empty.finish());
  EXPECT_TRUE(empty.bytes(0).empty());
  EXPECT_TRUE(empty.finish());
}

TEST(ByteReader, BytesAndStrAreViewsIntoTheInput) {
  const std::string s = "helloworld";
  ByteReader r(as_bytes(s));
  Bytes v = r.bytes(5);
  ASSERT_EQ(v.size(), 5u);
  EXPECT_EQ(v.data(), reinterpret_cast<const uint8_t*>(s.data()));
  EXPECT_EQ(r.str(5), "world");
  EXPECT_TRUE(r.finish());
}

TEST(ByteWriter, WritesBigEndian) {
  std::vector<uint8_t> out;
  ByteWriter w(out, 64);
  w.u8(0x01);
  w.u16(0x0203);
  w.u32(0x04050607);
  w.u64(0x08090a0b0c0d0e0full);
  w.str("ab");
  const std::array<uint8_t, 2> b = {0xfe, 0xff};
  w.bytes(b);
  EXPECT_TRUE(w.ok());
  EXPECT_EQ(w.size(), 19u);
  const std::vector<uint8_t> want = {1,  2,  3,  4,  5,  6,   7,   8,    9,   10,
                                     11, 12, 13, 14, 15, 'a', 'b', 0xfe, 0xff};
  EXPECT_EQ(out, want);
}

TEST(ByteWriter, AppendsToExistingContent) {
  std::vector<uint8_t> out = {9, 9};
  ByteWriter w(out, 4);
  w.u16(0x0102);
  EXPECT_TRUE(w.ok());
  EXPECT_EQ(out, (std::vector<uint8_t>{9, 9, 1, 2}));
  w.u8(3);  // the cap counts what was there before
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(out.size(), 4u);
}

TEST(ByteWriter, CapIsExactAndFailureSticky) {
  std::vector<uint8_t> out;
  ByteWriter w(out, 6);
  w.u32(0xdeadbeef);
  w.u16(0x1234);
  EXPECT_TRUE(w.ok());
  EXPECT_EQ(out.size(), 6u);  // exactly at the cap is fine
  w.u8(1);
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(out.size(), 6u);
  // Sticky: even an empty write after failure leaves it failed, nothing grows.
  w.bytes(Bytes{});
  w.u8(1);
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(out.size(), 6u);
}

TEST(ByteWriter, OversizedRunIsRefusedWhole) {
  std::vector<uint8_t> out;
  ByteWriter w(out, 8);
  w.u16(7);
  const std::vector<uint8_t> big(7, 0x55);
  w.bytes(big);  // 2 + 7 > 8: nothing of it is written
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(out.size(), 2u);

  std::vector<uint8_t> out2;
  ByteWriter w2(out2, 3);
  w2.u32(1);  // u32 checks room for all four bytes first
  EXPECT_FALSE(w2.ok());
  EXPECT_TRUE(out2.empty());
}

// A write that does not fit writes nothing, whatever its width: a u16 or u64
// must not leave half of itself behind at the cap.
TEST(ByteWriter, FailedWriteWritesNothing) {
  for (size_t room = 0; room < 8; room++) {
    std::vector<uint8_t> out;
    ByteWriter w(out, room);
    if (room < 2) {
      w.u16(0xffff);
      EXPECT_FALSE(w.ok());
      EXPECT_TRUE(out.empty()) << "u16 with room " << room;
    }
    std::vector<uint8_t> out64;
    ByteWriter w64(out64, room);
    w64.u64(0xffffffffffffffffull);
    EXPECT_FALSE(w64.ok());
    EXPECT_TRUE(out64.empty()) << "u64 with room " << room;
  }
}

TEST(ByteWriter, PatchU32) {
  std::vector<uint8_t> out;
  ByteWriter w(out, 64);
  w.u32(0);
  w.u8(0xaa);
  w.patch_u32(0, 0x01020304);
  EXPECT_TRUE(w.ok());
  EXPECT_EQ(out, (std::vector<uint8_t>{1, 2, 3, 4, 0xaa}));
  w.patch_u32(1, 0x05060708);  // last byte would be at 4: fits exactly
  EXPECT_TRUE(w.ok());
  EXPECT_EQ(out, (std::vector<uint8_t>{1, 5, 6, 7, 8}));
  w.patch_u32(2, 0);  // runs past the end
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(out, (std::vector<uint8_t>{1, 5, 6, 7, 8}));
}

TEST(ByteWriter, PatchPastEndFails) {
  std::vector<uint8_t> out;
  ByteWriter w(out, 64);
  w.u16(1);
  w.patch_u32(SIZE_MAX, 1);
  EXPECT_FALSE(w.ok());
  EXPECT_EQ(out.size(), 2u);
}

TEST(ByteReaderWriter, RoundTrip) {
  std::vector<uint8_t> out;
  ByteWriter w(out, 1024);
  for (uint32_t i = 0; i < 50; i++) {
    w.u8(static_cast<uint8_t>(i));
    w.u16(static_cast<uint16_t>(i * 1000));
    w.u32(i * 100000007u);
    w.u64(uint64_t{i} << 40 | i);
  }
  ASSERT_TRUE(w.ok());
  ByteReader r(out);
  for (uint32_t i = 0; i < 50; i++) {
    EXPECT_EQ(r.u8(), static_cast<uint8_t>(i));
    EXPECT_EQ(r.u16(), static_cast<uint16_t>(i * 1000));
    EXPECT_EQ(r.u32(), i * 100000007u);
    EXPECT_EQ(r.u64(), uint64_t{i} << 40 | i);
  }
  EXPECT_TRUE(r.finish());
}

}  // namespace
}  // namespace ct
