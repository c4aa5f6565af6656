// CodecPump with nothing but two session pairs and a codec whose pieces are
// odd sizes: it processes outer bytes in whole 7-byte chunks only and hands
// inner bytes out 5 at a time, while the sessions move 16 KiB frames; it
// XORs both ways so that a byte that skipped the codec shows.
#include "shared/stream/codec_pump.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "shared/wire/limits.h"
#include "tests/unit/stream/memory_link.h"

namespace ct {
namespace {

using namespace testing_links;

std::string xored(const std::string& s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c ^ 0x5a);
  return out;
}

// Holds what it was given in vectors read from a position (erasing from the
// front per piece would make the big transfers quadratic).
class ChunkyCodec final : public StreamCodec {
 public:
  static constexpr size_t kChunk = 7, kTake = 5;
  void put_outer(Bytes in) override {
    outer_in.insert(outer_in.end(), in.begin(), in.end());
    while (outer_in.size() - in_pos >= kChunk) decode(kChunk);
  }
  // Processes a partial chunk too (a record's end that the peer's FIN made
  // final).
  void flush_partial() { decode(outer_in.size() - in_pos); }
  uint64_t outer_consumed() const override { return consumed; }
  size_t take_inner(std::span<uint8_t> out) override {
    const size_t n = std::min({out.size(), kTake, inner_ready.size() - ready_pos});
    std::copy_n(inner_ready.begin() + static_cast<std::ptrdiff_t>(ready_pos), n, out.begin());
    ready_pos += n;
    if (ready_pos == inner_ready.size()) inner_ready.clear(), ready_pos = 0;
    return n;
  }
  bool put_inner(Bytes in) override {
    for (uint8_t b : in) outer_out.push_back(static_cast<uint8_t>(b ^ 0x5a));
    return true;
  }
  // All of it: the pump's high-water mark reads its size.
  Bytes outer_pending() const override { return Bytes(outer_out).subspan(out_pos); }
  void outer_sent(size_t n) override {
    out_pos += n;
    if (out_pos == outer_out.size()) outer_out.clear(), out_pos = 0;
  }
  void close_inner() override { closed = true; }
  bool inner_eof() const override { return false; }
  bool outer_drained() const override { return in_pos == outer_in.size(); }
  bool established() const override { return true; }
  bool failed() const override { return fail; }
  const std::string& error() const override { return why; }

  bool closed = false;
  bool fail = false;

 private:
  void decode(size_t n) {
    for (size_t i = 0; i < n; i++)
      inner_ready.push_back(static_cast<uint8_t>(outer_in[in_pos + i] ^ 0x5a));
    in_pos += n;
    consumed += n;
    if (in_pos == outer_in.size()) outer_in.clear(), in_pos = 0;
  }
  std::vector<uint8_t> outer_in, inner_ready, outer_out;
  size_t in_pos = 0, ready_pos = 0, out_pos = 0;
  uint64_t consumed = 0;
  std::string why = "broken record";
};

struct CodecPumpFixture : ::testing::Test {
  // `a`: the wrapper's stream (its peer plays the wrapper); `b`: the inner
  // stream towards OpenBao (its peer plays the forwarding process).
  Session sa{cfg(false), Clock::now()};
  Session wrapper{cfg(true), Clock::now()};
  Session sb{cfg(true), Clock::now()};
  Session upstream{cfg(false), Clock::now()};
  uint32_t ida = 0, idb = 0;
  ChunkyCodec codec;
  CodecPump pump;
  TestEnd w, u;  // what the wrapper and upstream send and see
  bool ok = true;

  void SetUp() override {
    handshake(sa, wrapper);
    handshake(sb, upstream);
    ida = wrapper.open();
    move(wrapper, sa);
    sa.take_events();
    idb = sb.open();
    move(sb, upstream);
    upstream.take_events();
    ASSERT_NE(ida, 0u);
    ASSERT_NE(idb, 0u);
  }

  // Rounds of: both peers send, their events feed the pump as RelayTable
  // does, the pump runs, the peers take what arrived.
  void settle(int rounds = 200) {
    for (int i = 0; i < rounds && ok; i++) {
      w.send_some(wrapper, ida);
      u.send_some(upstream, idb);
      move(wrapper, sa);
      for (const Event& ev : sa.take_events()) {
        if (ev.stream != ida) continue;
        if (ev.kind == Event::kData) codec.put_outer(ev.data);
        if (ev.kind == Event::kFin) pump.outer_fin();
      }
      move(upstream, sb);
      for (const Event& ev : sb.take_events()) {
        if (ev.stream != idb) continue;
        if (ev.kind == Event::kData) pump.inner_data(ev.data);
        if (ev.kind == Event::kFin) pump.inner_fin();
      }
      ok = pump.run(codec, sa, ida, sb, idb);
      move(sa, wrapper);
      w.take(wrapper, ida);
      move(sb, upstream);
      u.take(upstream, idb);
    }
  }
};

TEST_F(CodecPumpFixture, OuterBytesReachTheInnerStreamThroughTheCodecInItsOwnPieces) {
  w.to_send = pattern(7 * 40000, 1);  // several windows' worth
  settle();
  EXPECT_TRUE(ok);
  EXPECT_EQ(u.got.size(), w.to_send.size());
  EXPECT_TRUE(u.got == xored(w.to_send)) << "inner bytes differ from the decoded outer ones";
}

TEST_F(CodecPumpFixture, InnerBytesReachTheOuterStreamThroughTheCodecInItsOwnPieces) {
  u.to_send = pattern(300001, 2);
  settle();
  EXPECT_EQ(w.got.size(), u.to_send.size());
  EXPECT_TRUE(w.got == xored(u.to_send)) << "outer bytes differ from the encoded inner ones";
}

TEST_F(CodecPumpFixture, TheOuterStreamIsCreditedOnlyForWhatTheCodecProcessed) {
  const size_t before = wrapper.send_capacity(ida);
  // Above the session's credit threshold (a quarter window), so that the
  // credit leaves at once; the 3 bytes short of a chunk stay in the codec.
  w.to_send = pattern(7 * 100000 + 3, 3);
  settle();
  EXPECT_EQ(u.got.size(), 700000u);
  EXPECT_EQ(wrapper.send_capacity(ida), before - 3) << "credit for bytes the codec still holds";
}

TEST_F(CodecPumpFixture, TheOuterFinReachesTheInnerStreamOnlyOnceTheCodecProcessedEverything) {
  w.to_send = pattern(7 * 10 + 3, 4);
  w.fin_after = true;
  settle();
  EXPECT_FALSE(u.fin) << "FIN overtook 3 bytes the codec had not processed";
  codec.flush_partial();
  settle();
  EXPECT_TRUE(u.fin);
  EXPECT_EQ(u.got, xored(w.to_send));
  EXPECT_FALSE(pump.done()) << "only one direction is closed";
}

TEST_F(CodecPumpFixture, TheInnerFinClosesTheCodecThenFinsTheOuterStreamAfterItsBytes) {
  u.to_send = pattern(1000, 5);
  u.fin_after = true;
  settle();
  EXPECT_TRUE(codec.closed);
  EXPECT_TRUE(w.fin);
  EXPECT_EQ(w.got, xored(u.to_send));
  w.fin_after = true;
  settle();
  EXPECT_TRUE(u.fin);
  EXPECT_TRUE(pump.done());
}

TEST_F(CodecPumpFixture, AWrapperThatDoesNotReadStallsTheInnerSourceAndItResumes) {
  w.consume = false;
  u.to_send = pattern(8 * 1024 * 1024, 6);
  settle(100);
  // Held at most: a window in flight to the wrapper, what the codec took
  // before its output passed the high-water mark, a window waiting in the
  // pump.
  EXPECT_LE(u.sent, 3 * size_t{limits::kDefaultStreamWindow}) << "the inner source never stalled";
  EXPECT_EQ(upstream.send_capacity(idb), 0u);
  const size_t stalled_at = u.sent;
  settle(20);
  EXPECT_EQ(u.sent, stalled_at) << "the stall did not hold";
  w.consume = true;
  settle(400);
  EXPECT_EQ(w.got.size(), u.to_send.size());
  EXPECT_TRUE(w.got == xored(u.to_send));
}

TEST_F(CodecPumpFixture, ACodecFailureIsReported) {
  w.to_send = pattern(14, 7);
  codec.fail = true;
  settle(5);
  EXPECT_FALSE(ok);
}

}  // namespace
}  // namespace ct
