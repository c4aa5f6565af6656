// The rendezvous protocol (docs/beacon.md §2): preambles and answers
// round-trip in any split, every field is checked as soon as it is in, and a
// reader never asks for or accepts a byte beyond its message.
#include "shared/wire/rendezvous.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace ct::rdv {
namespace {

InstanceId inst(uint8_t b) {
  InstanceId i{};
  i.fill(b);
  return i;
}

Preamble bridge(size_t n) {
  Preamble p;
  p.role = Role::kBridge;
  p.id.fill(0xab);
  for (size_t i = 0; i < n; i++) p.instances.push_back(inst(static_cast<uint8_t>(i + 1)));
  return p;
}

// Feeds `b` in pieces of `step` bytes, each no larger than wanted().
PreambleReader::State feed_in_steps(PreambleReader& r, const std::vector<uint8_t>& b, size_t step) {
  size_t off = 0;
  while (off < b.size() && r.state() == PreambleReader::State::kMore) {
    const size_t n = std::min({step, b.size() - off, r.wanted()});
    r.feed(Bytes(b).subspan(off, n));
    off += n;
  }
  EXPECT_EQ(off, b.size());
  return r.state();
}

TEST(Rendezvous, PreamblesRoundTripInAnySplit) {
  for (size_t n : {size_t{0}, size_t{1}, kMaxInstances}) {
    const Preamble p = bridge(n);
    const auto bytes = encode_preamble(p);
    EXPECT_EQ(bytes.size(), kPreambleFixed + n * kInstanceSize);
    for (size_t step : {size_t{1}, size_t{7}, size_t{40}, bytes.size()}) {
      PreambleReader r;
      ASSERT_EQ(feed_in_steps(r, bytes, step), PreambleReader::State::kDone) << r.error();
      EXPECT_EQ(r.wanted(), 0u);
      EXPECT_EQ(r.preamble().role, Role::kBridge);
      EXPECT_EQ(r.preamble().id, p.id);
      EXPECT_EQ(r.preamble().instances, p.instances);
    }
  }
  Preamble b;
  b.role = Role::kBroker;
  b.instances = {inst(9)};
  PreambleReader r;
  EXPECT_EQ(r.feed(encode_preamble(b)), PreambleReader::State::kDone);
  EXPECT_EQ(r.preamble().role, Role::kBroker);
}

TEST(Rendezvous, TheReaderAsksForTheFixedPartThenExactlyTheIds) {
  const auto bytes = encode_preamble(bridge(3));
  PreambleReader r;
  EXPECT_EQ(r.wanted(), kPreambleFixed);
  r.feed(Bytes(bytes).first(kPreambleFixed));
  EXPECT_EQ(r.wanted(), 3 * kInstanceSize);
}

// Each field is refused with its reason, as soon as the fixed part is in.
TEST(Rendezvous, BadPreamblesAreRefusedWithAReason) {
  struct Case {
    size_t offset;
    uint8_t value;
    const char* why;
  };
  const Case cases[] = {
      {0, 'X', "magic"},      {4, 2, "version"}, {5, 0, "unknown role"},
      {5, 3, "unknown role"}, {6, 1, "flags"},   {7, 18, "at most"},
  };
  for (const Case& c : cases) {
    auto bytes = encode_preamble(bridge(0));
    bytes[c.offset] = c.value;
    PreambleReader r;
    EXPECT_EQ(r.feed(bytes), PreambleReader::State::kBad) << c.why;
    EXPECT_NE(r.error().find(c.why), std::string::npos) << r.error();
  }
  // A broker names exactly one instance.
  for (size_t n : {size_t{0}, size_t{2}}) {
    auto bytes = encode_preamble(bridge(n));
    bytes[5] = static_cast<uint8_t>(Role::kBroker);
    PreambleReader r;
    r.feed(bytes);
    EXPECT_EQ(r.state(), PreambleReader::State::kBad);
    EXPECT_NE(r.error().find("exactly one"), std::string::npos) << r.error();
  }
  // Instance ids: none all-zero, none twice.
  auto zero = encode_preamble(bridge(2));
  std::fill(zero.begin() + kPreambleFixed, zero.begin() + kPreambleFixed + kInstanceSize, 0);
  PreambleReader rz;
  EXPECT_EQ(rz.feed(zero), PreambleReader::State::kBad);
  EXPECT_NE(rz.error().find("all-zero"), std::string::npos);
  auto twice = encode_preamble(bridge(2));
  std::copy(twice.begin() + kPreambleFixed, twice.begin() + kPreambleFixed + kInstanceSize,
            twice.begin() + kPreambleFixed + kInstanceSize);
  PreambleReader rt;
  EXPECT_EQ(rt.feed(twice), PreambleReader::State::kBad);
  EXPECT_NE(rt.error().find("twice"), std::string::npos);
}

TEST(Rendezvous, AByteAfterThePreambleIsAnError) {
  auto bytes = encode_preamble(bridge(1));
  bytes.push_back(0x16);  // a TLS ClientHello sent before PAIRED
  PreambleReader r;
  EXPECT_EQ(r.feed(bytes), PreambleReader::State::kBad);
  EXPECT_NE(r.error().find("after the preamble"), std::string::npos);
  PreambleReader done;
  done.feed(encode_preamble(bridge(0)));
  const uint8_t one = 1;
  EXPECT_EQ(done.feed(Bytes(&one, 1)), PreambleReader::State::kBad);
}

TEST(Rendezvous, AnswersRoundTripOneAfterAnother) {
  std::vector<uint8_t> stream = encode_answer(Answer::kKeepalive);
  const auto paired = encode_answer(Answer::kPaired, "to broker 0011");
  stream.insert(stream.end(), paired.begin(), paired.end());
  AnswerReader r;
  size_t off = 0;
  std::vector<Answer> seen;
  while (off < stream.size()) {
    const size_t n = std::min<size_t>(3, r.wanted());
    ASSERT_GT(n, 0u);
    if (r.feed(Bytes(stream).subspan(off, n)) == AnswerReader::State::kDone) {
      seen.push_back(r.answer());
      if (r.answer() == Answer::kPaired) {
        EXPECT_EQ(r.reason(), "to broker 0011");
      }
      r.next();
    }
    off += n;
  }
  EXPECT_EQ(seen, (std::vector<Answer>{Answer::kKeepalive, Answer::kPaired}));
}

TEST(Rendezvous, AnAnswersReasonIsCutAndMadePrintable) {
  const std::string long_reason(500, 'x');
  AnswerReader r;
  EXPECT_EQ(r.feed(encode_answer(Answer::kNoPeer, long_reason)), AnswerReader::State::kDone);
  EXPECT_EQ(r.reason().size(), kMaxReason);
  AnswerReader p;
  EXPECT_EQ(p.feed(encode_answer(Answer::kOverCapacity, "a\nb\x01")), AnswerReader::State::kDone);
  EXPECT_EQ(p.reason(), "a?b?");
}

TEST(Rendezvous, BadAnswersAreRefusedWithAReason) {
  struct Case {
    size_t offset;
    uint8_t value;
    const char* why;
  };
  const Case cases[] = {
      {1, 'X', "magic"}, {4, 9, "version"}, {5, 6, "unknown answer code"}, {6, 1, "reason of"}};
  for (const Case& c : cases) {
    auto bytes = encode_answer(Answer::kPaired);
    bytes[c.offset] = c.value;
    AnswerReader r;
    EXPECT_EQ(r.feed(bytes), AnswerReader::State::kBad) << c.why;
    EXPECT_NE(r.error().find(c.why), std::string::npos) << r.error();
  }
  auto ctl = encode_answer(Answer::kNoPeer, "ab");
  ctl.back() = '\n';
  AnswerReader r;
  EXPECT_EQ(r.feed(ctl), AnswerReader::State::kBad);
  EXPECT_NE(r.error().find("printable"), std::string::npos);
  // The reader stops at the answer's end: the inner session's first bytes
  // after PAIRED are not its to take.
  auto more = encode_answer(Answer::kPaired);
  more.push_back(0x16);
  AnswerReader m;
  EXPECT_EQ(m.feed(more), AnswerReader::State::kBad);
}

}  // namespace
}  // namespace ct::rdv
