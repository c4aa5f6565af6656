// TlsLink's contract with its owner: the owner learns of a link's end only
// from the loop, never from inside the constructor. The bridge's TLS process
// (and the broker's beacon pool) insert a new link into their table after
// constructing it; an end reported before that found no entry, so no redial
// was planned and the bridge sat with no link and nothing logged (FI-45 at
// 40 ms RTT: the emulator answered a dial to a draining broker with an RST
// before the TLS process took the dialled socket).
#include "shared/tls/link.h"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <memory>
#include <string>
#include <vector>

#include "shared/os/loop.h"
#include "shared/tls/context.h"
#include "tests/unit/os/loopback.h"
#include "tests/unit/tls/test_ca.h"

namespace ct {
namespace {

using namespace std::chrono_literals;

struct RecordingOwner : Link::Owner {
  void on_link_events(Link& l) noexcept override { l.session().take_events(); }
  void on_link_closed(Link& l) noexcept override {
    closed.push_back(&l);
    why.push_back(l.close_reason());
  }
  std::vector<Link*> closed;
  std::vector<std::string> why;
};

// A client socket on loopback whose peer has already answered with an RST,
// as a load balancer (or our WAN emulator) does when no backend takes the
// connection: what the parent hands the TLS process as DIALED.
UniqueFd reset_connection() {
  test::TcpPair p = test::loopback_tcp_pair();
  const linger hard{1, 0};
  EXPECT_EQ(::setsockopt(p.server.get(), SOL_SOCKET, SO_LINGER, &hard, sizeof hard), 0);
  p.server.reset();  // the RST
  pollfd fds{p.client.get(), POLLIN, 0};
  EXPECT_EQ(::poll(&fds, 1, 5000), 1) << "the RST did not arrive within 5 s";
  EXPECT_NE(fds.revents & (POLLERR | POLLHUP), 0);
  return std::move(p.client);
}

TEST(TlsLink, AClientWhosePeerAlreadyResetIsClosedFromTheLoopNotTheConstructor) {
  test::TestCa ca("broker ca");
  auto ctx = TlsContext::create_upstream(ca.ca_pem());
  ASSERT_TRUE(ctx.ok()) << ctx.what();
  std::shared_ptr<const TlsContext> shared = std::move(ctx).value();
  Loop loop;
  RecordingOwner owner;
  SessionConfig c;
  c.role = Role::kBridge;
  c.opener = false;
  auto link = std::make_unique<TlsLink>(
      loop, owner, 7, reset_connection(),
      TlsLinkOptions{.context = shared, .server = false, .sni = "", .session = c, .beacon = {}},
      Clock::now());
  // The owner holds it now (the bridge: links_[id] = ...) and only now may
  // hear of its end.
  EXPECT_TRUE(owner.closed.empty()) << "closed inside the constructor: " << owner.why.front();
  for (int i = 0; i < 10 && owner.closed.empty(); i++) loop.run_once(Clock::now() + 1s);
  ASSERT_EQ(owner.closed.size(), 1u) << "the loop never reported the reset link";
  EXPECT_EQ(owner.closed.front(), link.get());
  EXPECT_TRUE(link->closed());
  EXPECT_NE(owner.why.front().find("reset"), std::string::npos) << owner.why.front();
}

}  // namespace
}  // namespace ct
