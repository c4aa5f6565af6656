// Two PlainLinks in one loop, joined as the TLS and forwarding processes
// join them: a shared-memory ring per direction (a real memfd) and a
// socketpair for wake-ups and EOF. Both ends' owners are test applications.
#include "shared/stream/link.h"

#include <gtest/gtest.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <cstring>
#include <memory>
#include <string>

#include "shared/wire/limits.h"
#include "tests/unit/stream/memory_link.h"

namespace ct {
namespace {

using namespace std::chrono_literals;
using namespace testing_links;

// A link's owner: its stream's events go to a TestEnd; closes are counted.
struct TestOwner final : Link::Owner {
  TestEnd end;
  uint32_t id = 0;
  int closed = 0;
  void on_link_events(Link& l) noexcept override { end.take(l.session(), id); }
  void on_link_closed(Link&) noexcept override { closed++; }
};

struct LinkFixture : ::testing::Test {
  Loop loop;
  TestOwner o1, o2;  // o1 owns the opener (the TLS process's end)
  UniqueFd mem;
  std::unique_ptr<PlainLink> l1, l2;

  void SetUp() override {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    int err = 0;
    mem = ShmRing::create(&err);
    ASSERT_TRUE(mem.valid()) << std::strerror(err);
    auto r1 = ShmRing::map(mem.get(), ShmRing::Side::kTls);
    auto r2 = ShmRing::map(mem.get(), ShmRing::Side::kForward);
    ASSERT_TRUE(r1 && r2) << (r1 ? r2 : r1).what();
    // The two eventfds as the parent hands them out: each end waits on its
    // own and writes the other's.
    const int e1 = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC),
              e2 = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    ASSERT_TRUE(e1 >= 0 && e2 >= 0);
    ChannelWake w1{UniqueFd(e1), UniqueFd(::dup(e2))}, w2{UniqueFd(e2), UniqueFd(::dup(e1))};
    l1 = std::make_unique<PlainLink>(loop, o1, 1, UniqueFd(sv[0]), std::move(*r1), std::move(w1),
                                     cfg(true), Clock::now());
    l2 = std::make_unique<PlainLink>(loop, o2, 2, UniqueFd(sv[1]), std::move(*r2), std::move(w2),
                                     cfg(false), Clock::now());
    settle(20);
    ASSERT_TRUE(l1->session().ready() && l2->session().ready());
    o1.id = o2.id = l1->session().open();
    ASSERT_NE(o1.id, 0u);
  }

  // Rounds of: both applications send, both links flush (as their owners
  // do at the end of a batch), the loop runs both ends of the channel.
  void settle(int rounds = 300) {
    for (int i = 0; i < rounds; i++) {
      if (!l1->closed()) o1.end.send_some(l1->session(), o1.id);
      if (!l2->closed()) o2.end.send_some(l2->session(), o2.id);
      l1->flush();
      l2->flush();
      loop.run_once(Clock::now() + 1ms);
      // A reader that starts consuming again does so without a new event.
      if (!l1->closed()) o1.end.take(l1->session(), o1.id);
      if (!l2->closed()) o2.end.take(l2->session(), o2.id);
    }
  }
};

TEST_F(LinkFixture, BytesCrossTheRingIntactBothWays) {
  // Each more than the ring holds: positions wrap and writers sleep.
  o1.end.to_send = pattern(3 * ShmRing::kRingBytes + 7, 1);
  o2.end.to_send = pattern(2 * ShmRing::kRingBytes + 3, 2);
  settle();
  EXPECT_EQ(o2.end.got.size(), o1.end.to_send.size());
  EXPECT_TRUE(o2.end.got == o1.end.to_send);
  EXPECT_EQ(o1.end.got.size(), o2.end.to_send.size());
  EXPECT_TRUE(o1.end.got == o2.end.to_send);
}

TEST_F(LinkFixture, AFinEachWayCrossesTheRingAfterTheBytes) {
  o1.end.to_send = pattern(100000, 3);
  o1.end.fin_after = true;
  settle(50);
  EXPECT_TRUE(o2.end.fin);
  EXPECT_EQ(o2.end.got, o1.end.to_send);
  EXPECT_FALSE(o1.end.fin);
  o2.end.fin_after = true;
  settle(50);
  EXPECT_TRUE(o1.end.fin);
  EXPECT_FALSE(l1->session().stream_exists(o1.id));
}

TEST_F(LinkFixture, AResetEachWayCrossesTheRingWithItsCode) {
  o1.end.to_send = "x";
  settle(10);
  l2->session().reset(o2.id, Code::kUpstreamReset);
  settle(10);
  EXPECT_EQ(o1.end.reset, Code::kUpstreamReset);
  const uint32_t second = l1->session().open();
  o1.id = o2.id = second;
  o1.end = TestEnd{};
  o1.end.to_send = "y";
  settle(10);
  l1->session().reset(second, Code::kCancel);
  settle(10);
  EXPECT_EQ(o2.end.reset, Code::kCancel);
}

TEST_F(LinkFixture, AReaderThatDoesNotConsumeStopsTheWriterAtTheWindowThenItResumes) {
  o2.end.consume = false;
  o1.end.to_send = pattern(8 * 1024 * 1024, 4);
  settle();
  EXPECT_LE(o1.end.sent, size_t{limits::kDefaultStreamWindow}) << "the writer never stalled";
  EXPECT_EQ(l1->session().send_capacity(o1.id), 0u);
  const size_t stalled_at = o1.end.sent;
  settle(20);
  EXPECT_EQ(o1.end.sent, stalled_at);
  o2.end.consume = true;
  settle(1000);
  EXPECT_EQ(o2.end.got.size(), o1.end.to_send.size());
  EXPECT_TRUE(o2.end.got == o1.end.to_send);
}

TEST_F(LinkFixture, ClosingOneEndTellsEachOwnerOnceAndTheOtherSeesAnExitNotAFailure) {
  l1->close("test");
  EXPECT_EQ(o1.closed, 1);
  settle(20);
  EXPECT_EQ(o1.closed, 1);
  EXPECT_EQ(o2.closed, 1);
  EXPECT_TRUE(l2->closed());
  EXPECT_FALSE(l2->failed()) << l2->close_reason();
}

TEST_F(LinkFixture, AnImpossibleReadPositionFromThePeerFailsTheLink) {
  // The peer's published read position on the ring we write (direction 0,
  // its head at byte 64: shm_ring.cc) moves far past anything we wrote.
  void* p = ::mmap(nullptr, ShmRing::kFileBytes, PROT_READ | PROT_WRITE, MAP_SHARED, mem.get(), 0);
  ASSERT_NE(p, MAP_FAILED);
  const uint64_t bogus = uint64_t{1} << 40;
  std::memcpy(static_cast<uint8_t*>(p) + 64, &bogus, sizeof bogus);
  o1.end.to_send = "z";
  settle(10);
  ::munmap(p, ShmRing::kFileBytes);
  EXPECT_EQ(o1.closed, 1);
  EXPECT_TRUE(l1->failed()) << l1->close_reason();
  EXPECT_NE(l1->close_reason().find("ring"), std::string::npos) << l1->close_reason();
}

}  // namespace
}  // namespace ct
