// A splice on a real socket pair and a real loop, its stream's session joined
// back to back with a peer session in memory: what happens when the socket
// dies while the stream has no credit to read it.
#include "shared/stream/splice.h"

#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

#include "shared/wire/limits.h"
#include "tests/unit/os/loopback.h"
#include "tests/unit/stream/memory_link.h"

namespace ct {
namespace {

using namespace std::chrono_literals;
using namespace testing_links;

struct SpliceFixture : ::testing::Test {
  Loop loop;
  NullOwner owner;
  MemoryLink link{loop, owner, 1, cfg(true)};
  Session peer{cfg(false), Clock::now()};
  SpliceTable table{loop};
  uint32_t id = 0;
  int far = -1;  // the test's end of the socket pair

  void SetUp() override {
    for (int i = 0; i < 10; i++) {
      move(link.session(), peer);
      move(peer, link.session());
    }
    ASSERT_TRUE(link.session().ready());
    id = link.session().open();
    ASSERT_NE(id, 0u);
    move(link.session(), peer);
    peer.take_events();
    link.session().take_events();
  }
  void TearDown() override {
    if (far >= 0) ::close(far);
  }

  // Writes into the far end until the splice has read the stream's whole
  // window and waits for credit.
  size_t fill_credit() {
    std::vector<uint8_t> chunk(64 * 1024, 0x5a);
    size_t written = 0;
    for (int i = 0; i < 500; i++) {
      const ssize_t n = ::send(far, chunk.data(), chunk.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n > 0) written += static_cast<size_t>(n);
      loop.run_once(Clock::now() + 5ms);
      if (link.session().send_capacity(id) == 0) return written;
    }
    ADD_FAILURE() << "the stream's credit was never used up";
    return written;
  }

  // The far end of the socket as a test application: what it still has to
  // write (then shutdown(SHUT_WR) if asked), what it read, whether it reads.
  std::string far_to_send;
  size_t far_sent = 0;
  bool far_shut_after = false, far_shut = false;
  std::string far_got;
  bool far_reads = true, far_eof = false;
  int far_read_rounds = 64;         // recv() calls per round
  size_t far_read_max = 64 * 1024;  // bytes per recv()
  TestEnd end;                      // the peer session's end of the stream

  void far_io() {
    while (far_sent < far_to_send.size()) {
      const ssize_t n = ::send(far, far_to_send.data() + far_sent, far_to_send.size() - far_sent,
                               MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n <= 0) break;
      far_sent += static_cast<size_t>(n);
    }
    if (far_shut_after && !far_shut && far_sent == far_to_send.size()) {
      far_shut = true;
      ::shutdown(far, SHUT_WR);
    }
    char buf[64 * 1024];
    for (int i = 0; far_reads && !far_eof && i < far_read_rounds; i++) {
      const ssize_t n = ::recv(far, buf, std::min(sizeof buf, far_read_max), MSG_DONTWAIT);
      if (n > 0) far_got.append(buf, static_cast<size_t>(n));
      if (n == 0) far_eof = true;
      if (n <= 0) break;
    }
  }

  // Rounds of: the far end and the peer move bytes, the link's events go
  // to the table, the loop runs the splice's socket.
  void settle(int rounds = 300) {
    for (int i = 0; i < rounds; i++) {
      far_io();
      end.send_some(peer, id);
      move(peer, link.session());
      for (const Event& ev : link.session().take_events()) table.dispatch(link, ev);
      table.flush();
      loop.run_once(Clock::now() + 1ms);
      move(link.session(), peer);
      end.take(peer, id);
    }
  }

  // A loopback TCP connection (an RST needs TCP): the splice gets one end.
  void tcp_pair(Code aborted) {
    test::TcpPair p = test::loopback_tcp_pair(SOCK_NONBLOCK);
    ASSERT_TRUE(p.client.valid() && p.server.valid());
    far = p.client.release();
    table.add(link, id, std::move(p.server), false, aborted);
  }

  void unix_pair() {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    far = sv[1];
    table.add(link, id, UniqueFd(sv[0]), false, Code::kCancel);
  }

  // Loop rounds, each waiting at most `wait`, that return within `window`.
  int rounds_within(Duration window, Duration wait) {
    int rounds = 0;
    const TimePoint until = Clock::now() + window;
    while (Clock::now() < until && rounds < 100000) {
      loop.run_once(std::min(until, Clock::now() + wait));
      rounds++;
    }
    return rounds;
  }
};

TEST_F(SpliceFixture, ResetByThePeerWithoutCreditResetsTheStreamAtOnce) {
  tcp_pair(Code::kUpstreamReset);
  fill_credit();

  const linger l{1, 0};
  ASSERT_EQ(::setsockopt(far, SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
  ::close(far);  // RST
  far = -1;
  for (int i = 0; i < 20 && table.size() != 0; i++) loop.run_once(Clock::now() + 100ms);
  EXPECT_EQ(table.size(), 0u) << "the splice still waits for credit on a reset socket";
  EXPECT_FALSE(link.session().stream_exists(id));
  move(link.session(), peer);
  bool reset = false;
  for (const Event& ev : peer.take_events()) {
    if (ev.kind != Event::kReset || ev.stream != id) continue;
    reset = true;
    // The splice's own code for an abort by its socket's peer, not CANCEL:
    // the broker counts resets by code.
    EXPECT_EQ(ev.code, Code::kUpstreamReset);
  }
  EXPECT_TRUE(reset) << "the peer was not told";
  // Nothing left in epoll that could wake the loop.
  EXPECT_LE(rounds_within(300ms, 100ms), 4);
}

TEST_F(SpliceFixture, HangUpWithoutCreditWakesOnceAndTheRestFollowsWhenCreditReturns) {
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  far = sv[1];
  table.add(link, id, UniqueFd(sv[0]), false, Code::kCancel);
  const size_t written = fill_credit();
  ::close(far);  // a clean close: EPOLLHUP on our end, data still unread
  far = -1;
  // Level-triggered with no interest, the hang-up would wake every wait.
  EXPECT_LE(rounds_within(300ms, 100ms), 6);
  ASSERT_EQ(table.size(), 1u) << "a clean hang-up must not lose the unread bytes";

  // Credit returns: every byte, then FIN.
  size_t delivered = 0;
  bool fin = false;
  for (int i = 0; i < 2000 && !fin; i++) {
    move(link.session(), peer);
    for (const Event& ev : peer.take_events()) {
      if (ev.kind == Event::kData && ev.stream == id) {
        delivered += ev.data.size();
        peer.consume(id, ev.data.size());
      }
      if (ev.kind == Event::kFin && ev.stream == id) fin = true;
    }
    move(peer, link.session());
    for (const Event& ev : link.session().take_events()) table.dispatch(link, ev);
    loop.run_once(Clock::now() + 5ms);
  }
  EXPECT_TRUE(fin);
  EXPECT_EQ(delivered, written);
}

TEST_F(SpliceFixture, ASecondSpliceForOneStreamIsACallerBugAndAborts) {
  unix_pair();
  int sv[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
  ::close(sv[1]);
  UniqueFd second(sv[0]);
  EXPECT_DEATH(table.add(link, id, std::move(second), false, Code::kCancel), "check failed");
}

TEST_F(SpliceFixture, BytesCrossIntactBothWays) {
  unix_pair();
  far_to_send = pattern(3 * 1024 * 1024 + 11, 1);
  end.to_send = pattern(2 * 1024 * 1024 + 3, 2);
  settle();
  EXPECT_EQ(end.got.size(), far_to_send.size());
  EXPECT_TRUE(end.got == far_to_send) << "socket bytes arrived changed on the stream";
  EXPECT_EQ(far_got.size(), end.to_send.size());
  EXPECT_TRUE(far_got == end.to_send) << "stream bytes arrived changed on the socket";
  EXPECT_EQ(table.size(), 1u);
}

TEST_F(SpliceFixture, EofBecomesFinAndFinBecomesShutdownAndBothFreeTheEntry) {
  unix_pair();
  far_to_send = pattern(70000, 3);
  far_shut_after = true;
  settle(50);
  EXPECT_TRUE(end.fin);
  EXPECT_EQ(end.got, far_to_send);
  EXPECT_FALSE(far_eof);
  EXPECT_EQ(table.size(), 1u) << "half-closed: the other way still carries bytes";
  end.to_send = pattern(4000, 4);
  end.fin_after = true;
  settle(50);
  EXPECT_TRUE(far_eof);
  EXPECT_EQ(far_got, end.to_send);
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.find(link, id), nullptr);
}

TEST_F(SpliceFixture, AStreamResetClosesTheSocketAndFreesTheEntry) {
  unix_pair();
  peer.reset(id, Code::kCancel);
  settle(5);
  EXPECT_TRUE(far_eof) << "the socket outlived its stream";
  EXPECT_EQ(table.size(), 0u);
  EXPECT_EQ(table.streams_on(link), 0u);
}

TEST_F(SpliceFixture, ASocketAbortResetsTheStreamWithTheSplicesCodeAndFreesTheEntry) {
  tcp_pair(Code::kCancel);
  settle(2);
  const linger l{1, 0};
  ASSERT_EQ(::setsockopt(far, SOL_SOCKET, SO_LINGER, &l, sizeof l), 0);
  ::close(far);  // RST
  far = -1;
  for (int i = 0; i < 50 && !end.reset; i++) {
    loop.run_once(Clock::now() + 5ms);
    move(link.session(), peer);
    end.take(peer, id);
  }
  EXPECT_EQ(end.reset, Code::kCancel);
  EXPECT_FALSE(end.fin) << "an abort must not look like a clean end";
  EXPECT_EQ(table.size(), 0u);
}

TEST_F(SpliceFixture, ASocketThatIsNotReadStopsTheStreamsWriterThenItResumes) {
  unix_pair();
  far_reads = false;
  end.to_send = pattern(16 * 1024 * 1024, 5);
  settle();
  EXPECT_LT(end.sent, end.to_send.size()) << "the stream's writer never stalled";
  EXPECT_EQ(peer.send_capacity(id), 0u);
  const size_t stalled_at = end.sent;
  settle(20);
  EXPECT_EQ(end.sent, stalled_at);
  far_reads = true;
  settle(2000);
  EXPECT_EQ(far_got.size(), end.to_send.size());
  EXPECT_TRUE(far_got == end.to_send);
}

TEST_F(SpliceFixture, AReaderSlowerThanItsWriterNeverMakesTheSpliceHoldMoreThanItsCredit) {
  // The far end reads 16 KiB a round while the stream's writer always has
  // more: the socket never takes everything queued, so the splice's backlog
  // never empties. The bytes it already wrote must not stay in its buffer
  // (the broker's forwarding process held 39 MiB with a budget of 8, FI-58).
  unix_pair();
  far_read_rounds = 1;
  far_read_max = 16 * 1024;
  end.to_send = pattern(8 * 1024 * 1024, 7);
  size_t peak = 0;
  for (int i = 0; i < 3000 && far_got.size() < 5 * 1024 * 1024; i++) {
    settle(1);
    if (const Splice* s = table.find(link, id)) peak = std::max(peak, s->backlog_capacity());
  }
  EXPECT_GT(far_got.size(), size_t{4 * limits::kDefaultStreamWindow}) << "too few bytes crossed";
  // The stream's credit bounds the unsent bytes; the buffer may add a quarter
  // and one read's worth of frames.
  EXPECT_LE(peak, size_t{limits::kDefaultStreamWindow} * 5 / 4 + 64 * 1024) << peak;
  far_read_rounds = 64;
  far_read_max = 64 * 1024;
  for (int i = 0; i < 3000 && far_got.size() < end.to_send.size(); i++) settle(1);
  EXPECT_EQ(far_got.size(), end.to_send.size());
  EXPECT_TRUE(far_got == end.to_send);
}

TEST_F(SpliceFixture, AStreamThatIsNotConsumedStopsReadingTheSocketThenItResumes) {
  unix_pair();
  end.consume = false;
  far_to_send = pattern(16 * 1024 * 1024, 6);
  settle();
  EXPECT_LT(far_sent, far_to_send.size()) << "the splice read the socket without credit";
  EXPECT_LE(end.got.size(), size_t{limits::kDefaultStreamWindow});
  const size_t stalled_at = far_sent;
  settle(20);
  EXPECT_EQ(far_sent, stalled_at);
  end.consume = true;
  settle(2000);
  EXPECT_EQ(end.got.size(), far_to_send.size());
  EXPECT_TRUE(end.got == far_to_send);
}

}  // namespace
}  // namespace ct
