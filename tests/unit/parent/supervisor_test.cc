// The supervisor over real tiny children: this test binary execs itself as
// each child (main() below), and the child does what CT_TEST_<ROLE> says.
// Every time the supervisor keeps runs on a fake clock passed to start(),
// tick() and on_sigchld(); only the waits for a real child are real, and
// each has a deadline.
#include "shared/parent/supervisor.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "shared/base/bytes.h"
#include "shared/proc/spawn.h"
#include "shared/wire/limits.h"

namespace ct {
namespace {

using std::chrono::milliseconds;
using std::chrono::seconds;
using Which = Supervisor::Which;

// How long a child waits for its parent at most: no test child outlives a
// stuck test run by more.
constexpr int kChildLifeMs = 20000;

// ------------------------------------------------------------ the children

int child_main(const char* role) {
  const char* mode = std::getenv((std::string("CT_TEST_") + role).c_str());
  const std::string m = mode == nullptr ? "silent" : mode;
  if (m == "exit") return 3;
  if (m == "other-version") return kExitVersionMismatch;
  const MsgRule accepts[] = {{Msg::kPeerWake, true, 1},
                             {Msg::kPeerRing, true, 0},
                             {Msg::kPeerChannel, true, 0},
                             {Msg::kPing, false, 8}};
  IpcChannel ch(UniqueFd(kChildControlFd), accepts);
  // A child role's parent never accepts DIAL_REQUEST in these tests.
  if (m == "forbidden") ch.send(Msg::kDialRequest, Bytes{});
  if (m == "unasked-pong") {
    std::vector<uint8_t> body;
    ByteWriter out(body, 16);
    out.u64(99);
    out.u64(0);
    ch.send(Msg::kPong, body);
  }
  const auto until = Clock::now() + milliseconds(kChildLifeMs);
  while (Clock::now() < until) {
    pollfd p{kChildControlFd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    IpcMessage msg;
    std::string why;
    const auto r = ch.recv(&msg, &why);
    if (r == IpcChannel::Recv::kClosed || r == IpcChannel::Recv::kBad) return 0;
    if (r != IpcChannel::Recv::kMessage || msg.type != Msg::kPing || m != "answer") continue;
    ByteReader in(msg.body);
    const uint64_t seq = in.u64();
    std::vector<uint8_t> body;
    ByteWriter out(body, 16);
    out.u64(seq);
    out.u64(7);  // log lines dropped
    ch.send(Msg::kPong, body);
  }
  return 0;
}

// ------------------------------------------------------------ the parent side

struct Recorder : Supervisor::Hooks {
  int started[2] = {0, 0};
  std::vector<std::pair<Which, int>> exited;
  std::vector<std::pair<Which, bool>> answering;
  std::vector<Msg> messages;
  int pongs[2] = {0, 0};
  void on_child_started(Which w, IpcChannel&) noexcept override { started[w]++; }
  void on_child_message(Which, IpcMessage& m) noexcept override { messages.push_back(m.type); }
  void on_child_exited(Which w, int status) noexcept override { exited.push_back({w, status}); }
  void on_child_answering(Which w, bool a) noexcept override { answering.push_back({w, a}); }
  void on_child_log_dropped(Which w, uint64_t lines) noexcept override {
    if (lines == 7) pongs[w]++;
  }
};

const TimePoint t0 = TimePoint(std::chrono::hours(1));

class SupervisorTest : public ::testing::Test {
 protected:
  void start(const char* tls_mode, const char* fwd_mode) {
    setenv("CT_TEST_tls", tls_mode, 1);
    setenv("CT_TEST_forward", fwd_mode, 1);
    Result<UniqueFd> a = open_self_exe();
    ASSERT_TRUE(a) << a.what();
    Result<UniqueFd> b = open_self_exe();
    ASSERT_TRUE(b) << b.what();
    // The Supervisor keeps a view of its tables (a daemon's are constexpr):
    // they must outlive it.
    static constexpr MsgRule kAccepts[] = {{Msg::kReady, false, 0}, {Msg::kPong, false, 16}};
    sup_ = std::make_unique<Supervisor>(loop_, rec_, "sup-test", std::move(*a), std::move(*b),
                                        kAccepts, kAccepts);
    ASSERT_TRUE(sup_->start(t0));
  }

  void TearDown() override {
    if (!sup_) return;
    sup_->set_stopping();
    for (Which w : {Supervisor::kTls, Supervisor::kForward}) {
      if (!sup_->alive(w)) continue;
      sup_->kill_child(w, "test over");
      reap(w, t0);
    }
  }

  // Waits (10 s at most, on the real clock) until child `w` has ended, then
  // lets the supervisor reap it as SIGCHLD would. False if it did not end.
  bool reap(Which w, TimePoint now) {
    const pid_t pid = sup_->pid(w);
    if (pid <= 0) return false;
    const int pidfd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
    if (pidfd < 0) return false;
    pollfd p{pidfd, POLLIN, 0};
    const int n = poll(&p, 1, 10000);
    close(pidfd);
    if (n != 1) return false;
    sup_->on_sigchld(now);
    return !sup_->alive(w);
  }

  // Runs the loop until `done` holds: 10 s at most on the real clock, far
  // more than a child needs even on a loaded machine.
  template <typename F>
  bool pump_until(F done) {
    const auto until = Clock::now() + seconds(10);
    while (!done() && Clock::now() < until) {
      sup_->after_batch();
      loop_.run_once(Clock::now() + milliseconds(50));
    }
    return done();
  }

  Loop loop_;
  Recorder rec_;
  std::unique_ptr<Supervisor> sup_;
};

TEST_F(SupervisorTest, AChildThatExitsIsRestartedWithDoublingBackoff) {
  start("exit", "silent");
  ASSERT_TRUE(reap(Supervisor::kTls, t0));
  ASSERT_EQ(rec_.exited.size(), 1u);
  EXPECT_TRUE(WIFEXITED(rec_.exited[0].second));
  EXPECT_EQ(WEXITSTATUS(rec_.exited[0].second), 3);
  // First restart 100 ms after the exit, not before.
  sup_->tick(t0 + milliseconds(99));
  EXPECT_FALSE(sup_->alive(Supervisor::kTls));
  sup_->tick(t0 + milliseconds(100));
  EXPECT_TRUE(sup_->alive(Supervisor::kTls));
  EXPECT_EQ(rec_.started[Supervisor::kTls], 2);
  EXPECT_EQ(sup_->restarts(), 1u);
  // It exits again at once: the next wait is twice as long.
  const TimePoint t1 = t0 + milliseconds(100);
  ASSERT_TRUE(reap(Supervisor::kTls, t1));
  sup_->tick(t1 + milliseconds(199));
  EXPECT_FALSE(sup_->alive(Supervisor::kTls));
  sup_->tick(t1 + milliseconds(200));
  EXPECT_TRUE(sup_->alive(Supervisor::kTls));
  EXPECT_EQ(sup_->restarts(), 2u);
  // The sibling ran on throughout.
  EXPECT_EQ(rec_.started[Supervisor::kForward], 1);
  EXPECT_TRUE(sup_->alive(Supervisor::kForward));
}

TEST_F(SupervisorTest, AChildThatRanAMinuteRestartsAfterTheShortestWaitAgain) {
  start("exit", "silent");
  ASSERT_TRUE(reap(Supervisor::kTls, t0));
  sup_->tick(t0 + milliseconds(100));
  ASSERT_TRUE(sup_->alive(Supervisor::kTls));
  // This one "ran" for 60 s on the fake clock: the backoff starts over.
  const TimePoint t1 = t0 + milliseconds(100) + seconds(60);
  ASSERT_TRUE(reap(Supervisor::kTls, t1));
  sup_->tick(t1 + milliseconds(99));
  EXPECT_FALSE(sup_->alive(Supervisor::kTls));
  sup_->tick(t1 + milliseconds(100));
  EXPECT_TRUE(sup_->alive(Supervisor::kTls));
}

TEST_F(SupervisorTest, NoRestartOnceStopping) {
  start("exit", "silent");
  sup_->set_stopping();
  ASSERT_TRUE(reap(Supervisor::kTls, t0));
  sup_->tick(t0 + seconds(20));
  EXPECT_FALSE(sup_->alive(Supervisor::kTls));
  EXPECT_EQ(rec_.started[Supervisor::kTls], 1);
}

TEST_F(SupervisorTest, AChildOfAnotherVersionIsNotRestarted) {
  start("other-version", "silent");
  ASSERT_TRUE(reap(Supervisor::kTls, t0));
  sup_->tick(t0 + seconds(30));
  EXPECT_FALSE(sup_->alive(Supervisor::kTls));
  EXPECT_EQ(sup_->restarts(), 0u);
}

TEST_F(SupervisorTest, ALateAnswerIsReportedAndThenTheChildAnswersAgain) {
  start("answer", "silent");
  // The PONG waits in the socket while the loop does not run: late.
  for (int i = 1; i <= 3; i++) sup_->tick(t0 + i * limits::kHeartbeatInterval);
  ASSERT_EQ(rec_.answering.size(), 2u);  // both children (the sibling never answers)
  EXPECT_EQ(rec_.answering[0], std::make_pair(Which(Supervisor::kTls), false));
  ASSERT_TRUE(pump_until([&] { return rec_.answering.size() == 3; }));
  EXPECT_EQ(rec_.answering[2], std::make_pair(Which(Supervisor::kTls), true));
  EXPECT_EQ(rec_.pongs[Supervisor::kTls], 1);
}

TEST_F(SupervisorTest, APongThatAnswersNoPingKillsItsSender) {
  start("unasked-pong", "silent");
  ASSERT_TRUE(pump_until([&] { return sup_->channel(Supervisor::kTls) == nullptr; }));
  ASSERT_TRUE(reap(Supervisor::kTls, t0));
  ASSERT_EQ(rec_.exited.size(), 1u);
  EXPECT_TRUE(WIFSIGNALED(rec_.exited[0].second));
  EXPECT_EQ(rec_.pongs[Supervisor::kTls], 0);
}

TEST_F(SupervisorTest, AChildThatDoesNotAnswerThePingIsKilledAtTheDeadline) {
  start("silent", "answer");
  // Ticks one interval apart, as the loop wakes; the answering sibling's
  // PONG is let in after each.
  TimePoint now = t0;
  for (int i = 1; i <= 5; i++) {
    now = t0 + i * limits::kHeartbeatInterval;
    sup_->tick(now);
    const int want = rec_.pongs[Supervisor::kForward] + 1;
    ASSERT_TRUE(pump_until([&] { return rec_.pongs[Supervisor::kForward] >= want; })) << i;
  }
  // The first PING went at t0 + 1 s; at t0 + 3 s it was late (grace).
  ASSERT_EQ(rec_.answering.size(), 1u);
  EXPECT_EQ(rec_.answering[0], std::make_pair(Which(Supervisor::kTls), false));
  // One nanosecond before the timeout it still lives.
  const TimePoint ping = t0 + limits::kHeartbeatInterval;
  sup_->tick(ping + limits::kHeartbeatTimeout - std::chrono::nanoseconds(1));
  EXPECT_NE(sup_->channel(Supervisor::kTls), nullptr);  // a killed child loses it at once
  EXPECT_EQ(rec_.answering.size(), 1u);
  sup_->tick(ping + limits::kHeartbeatTimeout);
  ASSERT_TRUE(reap(Supervisor::kTls, ping + limits::kHeartbeatTimeout));
  ASSERT_EQ(rec_.exited.size(), 1u);
  EXPECT_TRUE(WIFSIGNALED(rec_.exited[0].second));
  EXPECT_EQ(WTERMSIG(rec_.exited[0].second), SIGKILL);
  EXPECT_TRUE(sup_->alive(Supervisor::kForward));  // it answered every time
}

TEST_F(SupervisorTest, AMessageNotAllowedKillsItsSender) {
  start("forbidden", "silent");
  ASSERT_TRUE(pump_until([&] { return sup_->channel(Supervisor::kTls) == nullptr; }));
  ASSERT_TRUE(reap(Supervisor::kTls, t0));
  ASSERT_EQ(rec_.exited.size(), 1u);
  EXPECT_EQ(rec_.exited[0].first, Supervisor::kTls);
  EXPECT_TRUE(WIFSIGNALED(rec_.exited[0].second));
  EXPECT_EQ(WTERMSIG(rec_.exited[0].second), SIGKILL);
  EXPECT_TRUE(rec_.messages.empty());  // never handed on
  EXPECT_TRUE(sup_->alive(Supervisor::kForward));
}

}  // namespace
}  // namespace ct

// The test binary is also its own child: the supervisor execs it with
// "--child=<role>".
int main(int argc, char** argv) {
  if (argc >= 2 && std::strncmp(argv[1], "--child=", 8) == 0) return ct::child_main(argv[1] + 8);
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
