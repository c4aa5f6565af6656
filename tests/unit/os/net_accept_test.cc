// accept_peer's reserve fd: at EMFILE the pending connection is taken off the
// queue and closed (the client sees EOF), so a level-triggered listener is not
// left readable forever, and the reserve is held again afterwards.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "shared/os/net.h"

namespace ct {
namespace {

// Runs in a child process: it lowers its own fd limit.
int shed_scenario() {
  HostPort hp{"127.0.0.1", 0};
  auto listening = listen_tcp(*numeric_addr(hp), 16);
  if (!listening) return 10;
  UniqueFd listener = std::move(listening).value();
  UniqueFd spare(fcntl(listener.get(), F_DUPFD_CLOEXEC, 0));
  SockAddr to = *numeric_addr({"127.0.0.1", local_port(listener.get())});
  bool in_progress = false;
  auto client = connect_tcp(to, &in_progress);
  if (!client) return 11;
  // Use up every fd above the ones we hold.
  const int highest = fcntl(0, F_DUPFD, 0);
  if (highest < 0) return 12;
  close(highest);
  rlimit lim{static_cast<rlim_t>(highest), static_cast<rlim_t>(highest)};
  if (setrlimit(RLIMIT_NOFILE, &lim) != 0) return 13;
  usleep(100 * 1000);  // the handshake completes on loopback at once
  sockaddr_storage peer{};
  bool shed = false;
  UniqueFd got = accept_peer(listener.get(), &peer, &spare, listener.get(), &shed);
  if (got || !shed || errno != EMFILE) return 14;
  if (!spare) return 15;  // the reserve is held again
  // The queue is empty now: the next accept says EAGAIN instead of EMFILE.
  UniqueFd again = accept_peer(listener.get(), &peer, &spare, listener.get(), &shed);
  if (again || shed || errno != EAGAIN) return 16;
  // The client sees its connection closed.
  set_nonblock(client->get());
  char b;
  for (int i = 0; i < 100; i++) {
    const ssize_t n = read(client->get(), &b, 1);
    if (n == 0 || (n < 0 && errno == ECONNRESET)) return 0;
    usleep(10 * 1000);
  }
  return 17;
}

TEST(AcceptPeer, AtEmfileTheReserveFdShedsThePendingConnectionInsteadOfSpinning) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) _exit(shed_scenario());
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
}

}  // namespace
}  // namespace ct
