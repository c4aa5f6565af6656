// The parent's off-loop name lookup (resolver.h): the answer comes back
// through the loop, a failure is an error string, and a cancelled lookup's
// late answer reaches nobody. Names come from /etc/hosts ("localhost"), so
// no DNS traffic leaves the machine.
#include "shared/os/resolver.h"

#include <gtest/gtest.h>

namespace ct {
namespace {

// Runs the loop until `done` or 5 s.
template <typename Pred>
bool run_until(Loop& loop, Pred done) {
  const auto end = Clock::now() + std::chrono::seconds(5);
  while (!done() && Clock::now() < end)
    loop.run_once(std::min(end, Clock::now() + std::chrono::milliseconds(50)));
  return done();
}

TEST(Resolver, AnswersThroughTheLoop) {
  Loop loop;
  Resolver r(loop);
  bool called = false;
  std::optional<SockAddr> got;
  r.start({"localhost", 8443}, [&](Result<SockAddr> a) {
    called = true;
    if (a) got = *a;
  });
  EXPECT_TRUE(r.busy());
  EXPECT_FALSE(called);  // never from inside start()
  ASSERT_TRUE(run_until(loop, [&] { return called; }));
  EXPECT_FALSE(r.busy());
  ASSERT_TRUE(got.has_value());
  EXPECT_NE(got->str().find("8443"), std::string::npos) << got->str();
}

TEST(Resolver, AFailedLookupIsAnErrorNamingTheHost) {
  Loop loop;
  Resolver r(loop);
  bool called = false;
  std::string err;
  // An empty label never resolves, and glibc refuses it without sending a query.
  r.start({"bad..name", 1}, [&](Result<SockAddr> a) {
    called = true;
    ASSERT_FALSE(a.ok());
    err = a.what();
  });
  ASSERT_TRUE(run_until(loop, [&] { return called; }));
  EXPECT_NE(err.find("bad..name"), std::string::npos) << err;
}

TEST(Resolver, ACancelledLookupsAnswerReachesNobodyAndTheNextOneWorks) {
  Loop loop;
  Resolver r(loop);
  int first = 0, second = 0;
  r.start({"localhost", 1}, [&](Result<SockAddr>) { first++; });
  r.cancel();
  EXPECT_FALSE(r.busy());
  r.start({"localhost", 2}, [&](Result<SockAddr>) { second++; });
  ASSERT_TRUE(run_until(loop, [&] { return second == 1; }));
  // Give the cancelled thread's late signal time to arrive too: still nobody hears it.
  for (int i = 0; i < 5; i++) loop.run_once(Clock::now() + std::chrono::milliseconds(20));
  EXPECT_EQ(first, 0);
  EXPECT_EQ(second, 1);
}

}  // namespace
}  // namespace ct
