// A splice on a real socket pair and a real loop, its stream's session joined
// back to back with a peer session in memory: what happens when the socket
// dies while the stream has no credit to read it.
#include "shared/stream/splice.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <vector>

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

  // Loop rounds, each waiting at most `wait`, that return within `window`.
  int rounds_within(Duration window, Duration wait) {
    int rounds = 0;
    const TimePoint end = Clock::now() + window;
    while (Clock::now() < end && rounds < 100000) {
      loop.run_once(std::min(end, Clock::now() + wait));
      rounds++;
    }
    return rounds;
  }
};

TEST_F(SpliceFixture, ResetByThePeerWithoutCreditResetsTheStreamAtOnce) {
  UniqueFd lst(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(::bind(lst.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(lst.get(), 1), 0);
  ASSERT_EQ(::getsockname(lst.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  far = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_EQ(::connect(far, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  UniqueFd near(::accept4(lst.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  ASSERT_TRUE(near.valid());
  table.add(link, id, std::move(near), false, Code::kUpstreamReset);
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

}  // namespace
}  // namespace ct
