// The order rules of a channel end's table (MsgSequence): phase, once and
// pairing bits, on their own and through a real IpcChannel, where a refusal
// is a bad message like a wrong size.
#include <gtest/gtest.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "shared/ipc/channel.h"

namespace ct {
namespace {

// A child's table in the shape the daemons use (broker/procs.h).
const MsgRule kChild[] = {
    {Msg::kSettings, false, 64, kPhaseSetup, kOnce | kOpens},
    {Msg::kMaterial, false, 64, kPhaseRunning},
    {Msg::kListener, true, 0, kPhaseRunning, kOnce},
    {Msg::kPeerRing, true, 0, kPhaseRunning},
    {Msg::kPeerChannel, true, 0, kPhaseRunning, 0, Msg::kPeerRing},
    {Msg::kDrain, false, 0, kPhaseRunning, kOnce},
    {Msg::kPing, false, 8, kPhaseAny},
};

// A parent's table for a TLS child: READY opens, and may come again.
const MsgRule kParent[] = {
    {Msg::kReady, false, 0, kPhaseAny, kOpens},
    {Msg::kStatus, false, 64, kPhaseRunning},
    {Msg::kPong, false, 16, kPhaseAny},
};

// Feeds `msgs`; returns the index of the first refused one (-1: all admitted).
int first_refused(std::span<const MsgRule> rules, std::vector<Msg> msgs, std::string* why) {
  MsgSequence seq(rules);
  for (size_t i = 0; i < msgs.size(); i++)
    if (auto r = seq.admit(msgs[i]); !r) {
      *why = r.what();
      return static_cast<int>(i);
    }
  return -1;
}

TEST(MsgSequence, TheParentsStartAndARestartOfTheSiblingAreAccepted) {
  std::string why;
  EXPECT_EQ(first_refused(kChild,
                          {Msg::kPing, Msg::kSettings, Msg::kMaterial, Msg::kListener,
                           Msg::kPeerRing, Msg::kPeerChannel, Msg::kPing, Msg::kMaterial,
                           Msg::kPeerRing, Msg::kPeerChannel, Msg::kDrain, Msg::kPing},
                          &why),
            -1)
      << why;
}

TEST(MsgSequence, ASecondSettingsIsRefused) {
  std::string why;
  EXPECT_EQ(first_refused(kChild, {Msg::kSettings, Msg::kMaterial, Msg::kSettings}, &why), 2);
  EXPECT_EQ(why, "SETTINGS sent twice");
}

TEST(MsgSequence, ASecondOnceOnlyMessageIsRefused) {
  std::string why;
  EXPECT_EQ(first_refused(kChild, {Msg::kSettings, Msg::kListener, Msg::kListener}, &why), 2);
  EXPECT_EQ(why, "LISTENER sent twice");
  EXPECT_EQ(first_refused(kChild, {Msg::kSettings, Msg::kDrain, Msg::kDrain}, &why), 2);
}

TEST(MsgSequence, PeerChannelWithoutPeerRingJustBeforeIsRefused) {
  std::string why;
  EXPECT_EQ(first_refused(kChild, {Msg::kSettings, Msg::kPeerChannel}, &why), 1);
  EXPECT_EQ(why, "PEER_CHANNEL without PEER_RING just before it");
  // One ring serves one channel: a second PEER_CHANNEL needs a new PEER_RING.
  EXPECT_EQ(
      first_refused(kChild, {Msg::kSettings, Msg::kPeerRing, Msg::kPeerChannel, Msg::kPeerChannel},
                    &why),
      3);
}

TEST(MsgSequence, NothingMaySplitPeerRingFromItsPeerChannel) {
  std::string why;
  EXPECT_EQ(first_refused(kChild, {Msg::kSettings, Msg::kPeerRing, Msg::kPing}, &why), 2);
  EXPECT_EQ(why, "PING where PEER_CHANNEL must follow PEER_RING");
  EXPECT_EQ(first_refused(kChild, {Msg::kSettings, Msg::kPeerRing, Msg::kPeerRing}, &why), 2);
}

TEST(MsgSequence, MessagesOutsideTheirPhaseAreRefused) {
  std::string why;
  // Before SETTINGS only SETTINGS (and PING) may come.
  EXPECT_EQ(first_refused(kChild, {Msg::kMaterial}, &why), 0);
  EXPECT_EQ(why, "MATERIAL before SETTINGS");
  EXPECT_EQ(first_refused(kChild, {Msg::kPing, Msg::kPeerRing}, &why), 1);
  EXPECT_EQ(why, "PEER_RING before SETTINGS");
  // The parent: STATUS only after the child's first READY.
  EXPECT_EQ(first_refused(kParent, {Msg::kPong, Msg::kStatus}, &why), 1);
  EXPECT_EQ(why, "STATUS before READY");
  EXPECT_EQ(first_refused(kParent, {Msg::kReady, Msg::kStatus, Msg::kReady, Msg::kStatus}, &why),
            -1)
      << why;
}

TEST(MsgSequence, ASetupOnlyMessageIsRefusedOnceRunning) {
  const MsgRule rules[] = {
      {Msg::kReady, false, 0, kPhaseSetup, kOpens},
      {Msg::kPong, false, 16, kPhaseAny},
  };
  std::string why;
  EXPECT_EQ(first_refused(rules, {Msg::kReady, Msg::kPong, Msg::kReady}, &why), 2);
  EXPECT_EQ(why, "READY after READY");
}

TEST(MsgSequence, ATypeOutsideTheTableIsRefused) {
  std::string why;
  EXPECT_EQ(first_refused(kChild, {Msg::kDialed}, &why), 0);
  EXPECT_EQ(why, "DIALED not accepted here");
}

// Through a real channel: the order is checked in recv(), and a refusal is
// kBad (the receiving process ends), as for a malformed message.
// A parent end (which takes READY) and a child end with kChild's rules.
struct Ends {
  IpcChannel parent, child;
  Ends() {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0, sv) != 0) return;
    static const MsgRule kAny[] = {{Msg::kReady, false, 0}};
    parent = IpcChannel(UniqueFd(sv[0]), kAny);
    child = IpcChannel(UniqueFd(sv[1]), kChild);
  }
};

TEST(MsgSequence, IpcChannelRefusesASecondSettingsAsABadMessage) {
  Ends e;
  ASSERT_TRUE(e.child.valid());
  IpcChannel& parent = e.parent;
  IpcChannel& child = e.child;
  ASSERT_TRUE(parent.send(Msg::kSettings, as_bytes("a")));
  ASSERT_TRUE(parent.send(Msg::kMaterial, as_bytes("b")));
  ASSERT_TRUE(parent.send(Msg::kSettings, as_bytes("c")));
  IpcMessage m;
  std::string why;
  ASSERT_EQ(child.recv(&m, &why), IpcChannel::Recv::kMessage) << why;
  ASSERT_EQ(child.recv(&m, &why), IpcChannel::Recv::kMessage) << why;
  EXPECT_EQ(child.recv(&m, &why), IpcChannel::Recv::kBad);
  EXPECT_EQ(why, "SETTINGS sent twice");
}

TEST(MsgSequence, IpcChannelRefusesAMessageBeforeItsPhase) {
  Ends e;
  ASSERT_TRUE(e.child.valid());
  ASSERT_TRUE(e.parent.send(Msg::kDrain, Bytes{}));
  IpcMessage m;
  std::string why;
  EXPECT_EQ(e.child.recv(&m, &why), IpcChannel::Recv::kBad);
  EXPECT_EQ(why, "DRAIN before SETTINGS");
}

}  // namespace
}  // namespace ct
