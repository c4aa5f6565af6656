// log::Throttle: one line per interval, and the next line counts what was held back;
// LOG_LINK's "conn=N " prefix.
#include "shared/base/log.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

namespace ct::log {
namespace {

TEST(LogThrottle, FirstLineGoesOutThenOnePerIntervalWithTheHeldBackCount) {
  Throttle t(std::chrono::seconds(10));
  const auto t0 = Throttle::Clock::time_point{} + std::chrono::hours(1);
  uint64_t held = 99;
  ASSERT_TRUE(t.allow(t0, &held));
  EXPECT_EQ(held, 0u);
  for (int i = 0; i < 1000; i++) EXPECT_FALSE(t.allow(t0 + std::chrono::milliseconds(i), &held));
  EXPECT_FALSE(t.allow(t0 + std::chrono::milliseconds(9999), &held));
  ASSERT_TRUE(t.allow(t0 + std::chrono::seconds(10), &held));
  EXPECT_EQ(held, 1001u);
  // The interval restarts at the line that was written.
  EXPECT_FALSE(t.allow(t0 + std::chrono::seconds(19), &held));
  ASSERT_TRUE(t.allow(t0 + std::chrono::seconds(20), &held));
  EXPECT_EQ(held, 1u);
}

// stderr a TCP socket nobody reads (a log shipper that stalled): a write may
// take part of a line. What reaches the reader must still be whole lines,
// and what could not be written is counted.
TEST(LogStderr, AStalledStreamSocketGetsWholeLinesOnlyAndDropsAreCounted) {
  const int lst = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t alen = sizeof a;
  ASSERT_EQ(::bind(lst, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(lst, 1), 0);
  ASSERT_EQ(::getsockname(lst, reinterpret_cast<sockaddr*>(&a), &alen), 0);
  const int w = ::socket(AF_INET, SOCK_STREAM, 0);
  const int small = 4096;
  ASSERT_EQ(::setsockopt(w, SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  ASSERT_EQ(::connect(w, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const int r = ::accept(lst, nullptr, nullptr);
  ASSERT_GE(r, 0);
  ASSERT_EQ(::setsockopt(r, SOL_SOCKET, SO_RCVBUF, &small, sizeof small), 0);
  const int saved = ::dup(STDERR_FILENO);
  ASSERT_EQ(::dup2(w, STDERR_FILENO), STDERR_FILENO);
  init("logtest", "main", kInfo);  // makes the socket non-blocking
  const uint64_t dropped0 = dropped_lines();
  const std::string pad(700, 'x');
  for (int i = 0; i < 2000; i++) msg(kWarn, "line %d %s", i, pad.c_str());
  const uint64_t dropped = dropped_lines() - dropped0;
  // Drain the reader, then one more line: it first finishes any part-line.
  std::string got;
  char buf[65536];
  auto drain = [&] {
    for (int i = 0; i < 1000; i++) {
      const ssize_t n = ::recv(r, buf, sizeof buf, MSG_DONTWAIT);
      if (n <= 0) break;
      got.append(buf, static_cast<size_t>(n));
    }
  };
  drain();
  msg(kWarn, "last line");
  ::usleep(20000);  // loopback delivery of what was just sent
  drain();
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(w);
  ::close(r);
  ::close(lst);
  EXPECT_GT(dropped, 0u) << "the socket never filled up";
  ASSERT_FALSE(got.empty());
  EXPECT_EQ(got.back(), '\n');
  size_t lines = 0, pos = 0;
  while (pos < got.size()) {
    const size_t eol = got.find('\n', pos);
    ASSERT_NE(eol, std::string::npos);
    const std::string line = got.substr(pos, eol - pos);
    EXPECT_NE(line.find("logtest[main] warn: "), std::string::npos) << "merged or cut: " << line;
    EXPECT_TRUE(line.ends_with(pad) || line.ends_with("last line")) << "cut: " << line;
    lines++;
    pos = eol + 1;
  }
  EXPECT_EQ(lines + dropped, 2001u);
}

// What the macros write: the lines through a pipe that stands in for stderr.
std::string lines_of(void (*emit)()) {
  int p[2];
  if (::pipe(p) != 0) return "pipe failed";
  const int saved = ::dup(STDERR_FILENO);
  ::dup2(p[1], STDERR_FILENO);
  init("logtest", "main", kDebug);
  emit();
  ::dup2(saved, STDERR_FILENO);
  ::close(saved);
  ::close(p[1]);
  std::string got;
  char buf[4096];
  for (int i = 0; i < 64; i++) {  // the lines are a few hundred bytes: bounded
    const ssize_t n = ::read(p[0], buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  ::close(p[0]);
  return got;
}

TEST(LogLink, PutsTheConnectionIdFirstAtEveryLevel) {
  const std::string got = lines_of([] {
    LOG_LINK(LOG_WARN, 12, "bridge handshake %s: %d", "failed", 7);
    LOG_LINK(LOG_INFO, uint64_t{18446744073709551615u}, "TLS established");
    LOG_LINK(LOG_DEBUG, 3, "stream=%u opened", 5u);
    Throttle t;
    for (int i = 0; i < 3; i++) LOG_LINK_THROTTLED(t, 9, "refused: %s", "full");
  });
  EXPECT_NE(got.find(": conn=12 bridge handshake failed: 7\n"), std::string::npos) << got;
  EXPECT_NE(got.find(": conn=18446744073709551615 TLS established\n"), std::string::npos) << got;
  EXPECT_NE(got.find(": conn=3 stream=5 opened\n"), std::string::npos) << got;
  EXPECT_NE(got.find(": conn=9 refused: full (0 more like this since the last line)\n"),
            std::string::npos)
      << got;
  EXPECT_EQ(got.find("conn=9", got.find("conn=9") + 1), std::string::npos) << "throttled";
}

}  // namespace
}  // namespace ct::log
