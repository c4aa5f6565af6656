#include "shared/parent/host.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>

#include "shared/base/unique_fd.h"
#include "tests/unit/parent/temp_dir.h"

namespace ct {
namespace {

// A datagram socket standing in for systemd's notification socket, bound at
// `name` (a path, or "@..." for the abstract namespace).
UniqueFd bind_notify_socket(const std::string& name) {
  UniqueFd fd(socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::memcpy(sa.sun_path, name.data(), name.size());
  if (name[0] == '@') sa.sun_path[0] = '\0';
  const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + name.size());
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), len) != 0) return UniqueFd();
  return fd;
}

// The one datagram waiting (1 s at most), or "" when none came.
std::string receive(int fd) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, 1000) != 1) return "";
  char buf[256];
  const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  return n > 0 ? std::string(buf, static_cast<size_t>(n)) : "";
}

class SdNotify : public ::testing::Test {
 protected:
  void TearDown() override { unsetenv("NOTIFY_SOCKET"); }
  // What the socket bound at `name` receives when NOTIFY_SOCKET names it.
  std::string delivered(const std::string& name, const std::string& msg) {
    UniqueFd sock = bind_notify_socket(name);
    if (!sock.valid()) return "(cannot bind " + name + ")";
    setenv("NOTIFY_SOCKET", name.c_str(), 1);
    sd_notify(msg);
    return receive(sock.get());
  }
};

TEST_F(SdNotify, SendsOneDatagramToThePathInNotifySocket) {
  test::TempDir dir;
  EXPECT_EQ(delivered(dir.path("notify"), "READY=1\nSTATUS=started; no link yet"),
            "READY=1\nSTATUS=started; no link yet");
}

TEST_F(SdNotify, AnAtSignMeansTheAbstractNamespace) {
  EXPECT_EQ(delivered("@ct-parent-test-" + std::to_string(getpid()), "STOPPING=1"), "STOPPING=1");
}

TEST_F(SdNotify, WithoutNotifySocketNothingIsSent) {
  unsetenv("NOTIFY_SOCKET");
  sd_notify("READY=1");  // must neither fail nor block
  setenv("NOTIFY_SOCKET", "", 1);
  sd_notify("READY=1");
}

TEST(RaiseFdLimit, TheSoftLimitBecomesTheHardLimit) {
  rlimit before{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &before), 0);
  // Lowering the soft limit needs no privilege; it starts below the hard one.
  rlimit lowered = before;
  lowered.rlim_cur = std::min<rlim_t>(before.rlim_max / 2, 1024);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);
  uint64_t from = 0, to = 0;
  const auto raised = raise_fd_limit(&from, &to);
  ASSERT_TRUE(raised.ok()) << raised.what();
  EXPECT_EQ(from, lowered.rlim_cur);
  rlimit after{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &after), 0);
  EXPECT_EQ(after.rlim_cur, before.rlim_max);
  EXPECT_EQ(to, after.rlim_cur);
  setrlimit(RLIMIT_NOFILE, &before);
}

}  // namespace
}  // namespace ct
