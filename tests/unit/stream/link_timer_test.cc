// A link keeps its own timer armed for its session's next deadline, so the
// loop fires exactly the links that have something due and never visits the
// others: HELLO and dead-peer timeouts still close the link, a closed link
// leaves the heap, and many idle links cost no work per loop iteration.
#include <gtest/gtest.h>

#include <memory>
#include <vector>

#include "shared/os/loop.h"
#include "shared/wire/limits.h"
#include "tests/unit/stream/memory_link.h"

namespace ct {
namespace {

using namespace std::chrono_literals;
using testing_links::cfg;
using testing_links::move;

struct ClosedOwner : Link::Owner {
  void on_link_events(Link& l) noexcept override { l.session().take_events(); }
  void on_link_closed(Link& l) noexcept override { closed.push_back(l.close_reason()); }
  std::vector<std::string> closed;
};

// A transport-less link that counts the deadline work done on it.
class CountingLink final : public Link {
 public:
  CountingLink(Loop& loop, Owner& owner, uint64_t id, const SessionConfig& c)
      : Link(loop, owner, id) {
    start_session(c, Clock::now());
  }
  void on_io(uint32_t) noexcept override {}
  void flush() noexcept override {}
  void tick(TimePoint now) noexcept override {
    ticks++;
    Link::tick(now);
  }
  int ticks = 0;

 private:
  void close_transport() noexcept override {}
};

TEST(LinkTimer, HelloDeadlineClosesTheLinkFromTheLoopsTimer) {
  Loop loop;
  ClosedOwner owner;
  SessionConfig c = cfg(true);
  c.hello_timeout = 2s;
  const TimePoint start = Clock::now();
  CountingLink l(loop, owner, 1, c);
  EXPECT_EQ(loop.timers().size(), 1u);
  EXPECT_LE(loop.timers().next(), start + 3s);
  // Nothing before the deadline...
  loop.timers().run_due(start + 1s);
  EXPECT_EQ(l.ticks, 0);
  EXPECT_FALSE(l.closed());
  // ...and the timeout at it, with no caller walking the link.
  loop.timers().run_due(start + 3s);
  EXPECT_EQ(l.ticks, 1);
  ASSERT_TRUE(l.closed());
  EXPECT_EQ(l.close_reason(), "session error TIMEOUT");
  EXPECT_EQ(loop.timers().size(), 0u) << "a closed link leaves no timer behind";
}

TEST(LinkTimer, ClosingALinkCancelsItsTimer) {
  Loop loop;
  ClosedOwner owner;
  CountingLink a(loop, owner, 1, cfg(true));
  CountingLink b(loop, owner, 2, cfg(false));
  EXPECT_EQ(loop.timers().size(), 2u);
  a.close("test");
  EXPECT_EQ(loop.timers().size(), 1u);
  loop.timers().run_due(TimePoint::max() - 1h);
  EXPECT_EQ(a.ticks, 0) << "no callback after cancel";
  EXPECT_EQ(b.ticks, 1);
}

TEST(LinkTimer, DestroyedLinkLeavesTheHeap) {
  Loop loop;
  ClosedOwner owner;
  auto a = std::make_unique<CountingLink>(loop, owner, 1, cfg(true));
  EXPECT_EQ(loop.timers().size(), 1u);
  a.reset();
  EXPECT_EQ(loop.timers().size(), 0u);
}

// The measurement behind the change: 500 established, idle link pairs (a
// PING due every 30 s) and 200 loop iterations cost zero deadline work;
// walking every link per iteration did 200 x 1000 ticks here. When the
// ping deadline comes, each link ticks once and re-arms for the next one.
TEST(LinkTimer, IdleLinksCostNothingPerLoopIteration) {
  Loop loop;
  ClosedOwner owner;
  std::vector<std::unique_ptr<CountingLink>> links;
  SessionConfig co = cfg(true), ca = cfg(false);
  co.ping_interval = ca.ping_interval = 30s;
  co.dead_timeout = ca.dead_timeout = 90s;
  for (uint64_t i = 0; i < 500; i++) {
    links.push_back(std::make_unique<CountingLink>(loop, owner, 2 * i, co));
    links.push_back(std::make_unique<CountingLink>(loop, owner, 2 * i + 1, ca));
    Session& x = links[links.size() - 2]->session();
    Session& y = links.back()->session();
    move(x, y);
    move(y, x);
    ASSERT_TRUE(x.ready() && y.ready());
  }
  const TimePoint start = Clock::now();
  for (int i = 0; i < 200; i++) loop.run_once(start);  // epoll timeout 0
  int ticks = 0;
  for (auto& l : links) ticks += l->ticks;
  EXPECT_EQ(ticks, 0);
  EXPECT_EQ(loop.timers().size(), links.size());

  // At the first deadline (the HELLO timeout armed at start, earlier than
  // the ping) each link wakes once, finds nothing due and re-arms later.
  loop.timers().run_due(start + limits::kHelloTimeout + 1s);
  for (auto& l : links) {
    EXPECT_EQ(l->ticks, 1);
    EXPECT_FALSE(l->closed());
  }
  EXPECT_GE(loop.timers().next(), start + 25s);
  loop.timers().run_due(start + 31s);
  for (auto& l : links) EXPECT_TRUE(l->session().has_output()) << "the PING is queued";
}

}  // namespace
}  // namespace ct
