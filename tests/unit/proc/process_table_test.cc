// The daemons' process tables (broker/procs.h, bridge/procs.h) against what
// their processes really send: the parent's start and restart sequences are
// admitted, and each table admits from each sender only what it sends.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "bridge/procs.h"
#include "broker/procs.h"
#include "shared/proc/process_spec.h"

namespace ct {
namespace {

bool admits(std::span<const MsgRule> rules, std::vector<Msg> msgs, std::string* why) {
  MsgSequence seq(rules);
  for (Msg m : msgs)
    if (auto r = seq.admit(m); !r) {
      *why = r.what();
      return false;
    }
  return true;
}

bool has(std::span<const MsgRule> rules, Msg m) {
  for (const MsgRule& r : rules)
    if (r.type == m) return true;
  return false;
}

const DaemonProcs* const kDaemons[] = {&broker::kProcs, &bridge::kProcs};

// What DaemonParent and the Supervisor send a new TLS process (the broker adds
// its LISTENER), then a reload, the forwarding process's restart, and the drain.
TEST(ProcessTable, TheTlsProcessAdmitsWhatTheParentSends) {
  std::string why;
  EXPECT_TRUE(
      admits(broker::kProcs.tls.from_parent,
             {Msg::kSettings, Msg::kMaterial, Msg::kListener, Msg::kPeerWake, Msg::kPeerWake,
              Msg::kPeerRing, Msg::kPeerChannel, Msg::kPing, Msg::kMaterial, Msg::kPeerWake,
              Msg::kPeerWake, Msg::kPeerRing, Msg::kPeerChannel, Msg::kDrain},
             &why))
      << why;
  EXPECT_TRUE(
      admits(bridge::kProcs.tls.from_parent,
             {Msg::kSettings, Msg::kMaterial, Msg::kPeerWake, Msg::kPeerWake, Msg::kPeerRing,
              Msg::kPeerChannel, Msg::kDialed, Msg::kPing, Msg::kDialFailed, Msg::kDrain},
             &why))
      << why;
}

TEST(ProcessTable, TheForwardingProcessAdmitsWhatTheParentSends) {
  std::string why;
  EXPECT_TRUE(admits(
      broker::kProcs.forward.from_parent,
      {Msg::kSettings, Msg::kListener, Msg::kMetricsListener, Msg::kMetricsListener, Msg::kStats,
       Msg::kPeerWake, Msg::kPeerWake, Msg::kPeerRing, Msg::kPeerChannel, Msg::kStats, Msg::kDrain},
      &why))
      << why;
  EXPECT_TRUE(admits(bridge::kProcs.forward.from_parent,
                     {Msg::kSettings, Msg::kPeerWake, Msg::kPeerWake, Msg::kPeerRing,
                      Msg::kPeerChannel, Msg::kDrain},
                     &why))
      << why;
}

TEST(ProcessTable, EveryChildRefusesASecondSettingsAndALonePeerChannel) {
  for (const DaemonProcs* d : kDaemons)
    for (const ProcessSpec* p : {&d->tls, &d->forward}) {
      std::string why;
      EXPECT_FALSE(admits(p->from_parent, {Msg::kSettings, Msg::kSettings}, &why))
          << d->daemon << " " << role_name(p->role);
      EXPECT_FALSE(admits(p->from_parent, {Msg::kSettings, Msg::kPeerChannel}, &why))
          << d->daemon << " " << role_name(p->role);
      EXPECT_FALSE(admits(p->from_parent, {Msg::kDrain}, &why))
          << d->daemon << " " << role_name(p->role);
    }
}

// What each child sends its parent: the TLS process READY (again after every
// reload) and STATUS once it has links; the forwarding process READY once.
TEST(ProcessTable, TheParentAdmitsWhatEachChildSends) {
  std::string why;
  EXPECT_TRUE(admits(broker::kProcs.parent.from_tls,
                     {Msg::kStats, Msg::kReady, Msg::kStatus, Msg::kStats, Msg::kPong,
                      Msg::kMaterialError, Msg::kReady},
                     &why))
      << why;
  EXPECT_TRUE(admits(bridge::kProcs.parent.from_tls,
                     {Msg::kReady, Msg::kDialRequest, Msg::kStatus, Msg::kPong}, &why))
      << why;
  for (const DaemonProcs* d : kDaemons) {
    EXPECT_TRUE(admits(d->parent.from_forward, {Msg::kPong, Msg::kReady, Msg::kPong}, &why)) << why;
    EXPECT_FALSE(admits(d->parent.from_forward, {Msg::kReady, Msg::kReady}, &why)) << d->daemon;
    // STATUS is about links, which need material: never before the first READY.
    EXPECT_FALSE(admits(d->parent.from_tls, {Msg::kStatus}, &why)) << d->daemon;
  }
}

// Both TLS processes may ask for a dial (the broker's only in beacon mode,
// naming the beacon in one byte), only the broker's sends STATS, and no
// process sends DRAINED (gone from the protocol).
TEST(ProcessTable, EachParentAdmitsOnlyWhatItsChildrenSend) {
  for (const DaemonProcs* d : kDaemons) {
    for (const MsgRule& r : d->parent.from_tls) {
      if (r.type == Msg::kDialRequest) {
        EXPECT_EQ(r.max_len, 1u) << d->daemon;
      }
    }
  }
  EXPECT_TRUE(has(broker::kProcs.parent.from_tls, Msg::kDialRequest));
  EXPECT_TRUE(has(bridge::kProcs.parent.from_tls, Msg::kDialRequest));
  EXPECT_TRUE(has(broker::kProcs.parent.from_tls, Msg::kStats));
  EXPECT_FALSE(has(bridge::kProcs.parent.from_tls, Msg::kStats));
  for (const DaemonProcs* d : kDaemons)
    for (auto t : {d->parent.from_tls, d->parent.from_forward})
      for (const MsgRule& r : t) EXPECT_NE(static_cast<unsigned>(r.type), 36u) << d->daemon;
}

TEST(ProcessTable, EachTableHasOneOpenerAndEveryChildAnswersPingAnyTime) {
  for (const DaemonProcs* d : kDaemons) {
    for (auto t :
         {d->tls.from_parent, d->forward.from_parent, d->parent.from_tls, d->parent.from_forward}) {
      int openers = 0;
      for (const MsgRule& r : t) openers += (r.flags & kOpens) != 0;
      EXPECT_EQ(openers, 1) << d->daemon;
    }
    for (auto t : {d->tls.from_parent, d->forward.from_parent}) {
      std::string why;
      EXPECT_TRUE(admits(t, {Msg::kPing}, &why)) << d->daemon << ": " << why;
    }
  }
}

TEST(ProcessTable, RolesAndNames) {
  for (const DaemonProcs* d : kDaemons)
    for (ProcRole r : {ProcRole::kParent, ProcRole::kTls, ProcRole::kForward}) {
      EXPECT_EQ(d->of(r).role, r);
      EXPECT_EQ(role_from_name(role_name(r)), r);
    }
  EXPECT_FALSE(role_from_name("monitor").has_value());
  EXPECT_STREQ(broker::kProcs.tls.sandbox, "cloudtaser-broker tls");
  EXPECT_STREQ(bridge::kProcs.forward.sandbox, "vault-bridge forward");
  EXPECT_EQ(broker::kProcs.parent.sandbox, nullptr);
}

}  // namespace
}  // namespace ct
