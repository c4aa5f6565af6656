// The privsep IPC layer (shared/ipc/channel.h, shared/ipc/msgs.h), each
// direction, with the rule tables the daemons declare.
//
// Input: one byte choosing the receiving channel end (and so its rule table),
// one byte for the number of fds the kernel handed over, then the datagram.
// Oracle:
//  - ipc_check accepts a datagram only when its type is in the table, the
//    reserved bits are 0, the length field matches the datagram, the body is
//    within the type's cap and the fd count is what the rule declares; an
//    accepted datagram is exactly header(type, 0, len) + body; a refusal says why;
//  - decode_settings / decode_material / decode_status / decode_metrics /
//    decode_listener_options and the beacon's decode_options / decode_stats,
//    applied to the body of
//    an accepted message of their type and to the raw bytes as well: a
//    successful decode re-encodes to the identical bytes (decoders consume a
//    body exactly and accept one encoding only).
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "beacon/metrics.h"
#include "beacon/options.h"
#include "beacon/procs.h"
#include "bridge/procs.h"
#include "broker/metrics.h"
#include "broker/procs.h"
#include "fuzz/fuzz_input.h"
#include "shared/ipc/channel.h"
#include "shared/ipc/msgs.h"
#include "shared/os/admission.h"
#include "shared/wire/limits.h"

namespace {

using namespace ct;

// Every channel end's table, as the daemons declare them (broker/procs.h,
// bridge/procs.h, beacon/procs.h): each child from its parent, each parent
// from each child.
const std::span<const MsgRule> kTables[] = {
    broker::kProcs.tls.from_parent, broker::kProcs.forward.from_parent,
    bridge::kProcs.tls.from_parent, bridge::kProcs.forward.from_parent,
    broker::kProcs.parent.from_tls, broker::kProcs.parent.from_forward,
    bridge::kProcs.parent.from_tls, bridge::kProcs.parent.from_forward,
    beacon::kProcs.tls.from_parent, beacon::kProcs.forward.from_parent,
    beacon::kProcs.parent.from_tls, beacon::kProcs.parent.from_forward,
};

bool equal(const std::vector<uint8_t>& a, Bytes b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// Each decoder: success implies the encoder gives back the same bytes.
void check_bodies(Bytes body) {
  if (auto s = decode_settings(body)) {
    FZ_CHECK(s->log_level <= 3, "settings with log level %u", s->log_level);
    FZ_CHECK(equal(encode_settings(*s), body), "settings do not re-encode identically");
  }
  if (auto m = decode_material(body)) {
    FZ_CHECK(m->pins.size() <= 16, "%zu pins", m->pins.size());
    FZ_CHECK(equal(encode_material(*m), body), "material does not re-encode identically");
    wipe_material(*m);
  }
  if (auto st = decode_status(body)) {
    FZ_CHECK(equal(encode_status(*st), body), "status does not re-encode identically");
  }
  CertState certs;
  if (auto mt = decode_metrics(body, &certs)) {
    FZ_CHECK(equal(encode_metrics(*mt, certs), body), "metrics do not re-encode identically");
    (void)render_metrics(*mt, ForwardCounters{}, "fuzz",
                         certs);  // never crashes on any accepted set
  }
  // An empty body is the defaults, which encode to the full form.
  if (auto lo = decode_listener_options(body); lo && !body.empty()) {
    FZ_CHECK(lo->probes_only <= 1, "listener options with probes_only %u", lo->probes_only);
    FZ_CHECK(equal(encode_listener_options(*lo), body),
             "listener options do not re-encode identically");
  }
  if (auto o = beacon::decode_options(body)) {
    FZ_CHECK(equal(beacon::encode_options(*o), body),
             "beacon options do not re-encode identically");
  }
  if (auto st = beacon::decode_stats(body)) {
    FZ_CHECK(equal(beacon::encode_stats(*st), body), "beacon stats do not re-encode identically");
    (void)beacon::render_metrics(*st, {}, "fuzz");
  }
  if (auto s = decode_settings(body)) {
    FZ_CHECK(!s->drop_user || (s->uid != 0 && s->gid != 0), "settings switch to root");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fuzz::FuzzInput fin(Bytes(data, size));
  const std::span<const MsgRule> rules = fin.pick(kTables);
  const int nfds = fin.u8() % 3;
  const Bytes datagram = fin.rest();

  auto checked = ipc_check(datagram, nfds, rules);
  if (checked) {
    const IpcMessage& msg = *checked;
    FZ_CHECK(datagram.size() >= 8, "accepted a %zu-byte datagram", datagram.size());
    const MsgRule* rule = nullptr;
    for (const MsgRule& r : rules)
      if (r.type == msg.type) rule = &r;
    FZ_CHECK(rule != nullptr, "accepted type %u not in the table", static_cast<unsigned>(msg.type));
    FZ_CHECK(msg.body.size() <= rule->max_len, "%s body of %zu over its cap %u", msg_name(msg.type),
             msg.body.size(), rule->max_len);
    FZ_CHECK(nfds == (rule->has_fd ? 1 : 0), "%s accepted with %d fds", msg_name(msg.type), nfds);
    // Re-encode the header the way IpcChannel::send does.
    std::vector<uint8_t> again;
    ByteWriter w(again, 8 + limits::kMaxIpcMessage);
    w.u16(static_cast<uint16_t>(msg.type));
    w.u16(0);
    w.u32(static_cast<uint32_t>(msg.body.size()));
    w.bytes(msg.body);
    FZ_CHECK(w.ok() && equal(again, datagram), "accepted datagram is not header + body");
    // As a channel's first message it passes the order rules exactly when
    // its rule allows the setup phase and needs no predecessor.
    MsgSequence seq(rules);
    FZ_CHECK(
        seq.admit(msg.type).ok() == ((rule->when & kPhaseSetup) != 0 && rule->after == Msg::kNone),
        "%s as a first message: order rules disagree with its rule", msg_name(msg.type));
    switch (msg.type) {
      case Msg::kSettings:
      case Msg::kMaterial:
      case Msg::kStatus:
      case Msg::kStats:
      case Msg::kListener:
        check_bodies(msg.body);
        break;
      default:
        break;
    }
  } else {
    FZ_CHECK(!checked.what().empty(), "refused without a reason");
  }
  // The decoders see bodies only after ipc_check, but they must hold on their
  // own too (the body cap is the only thing ipc_check adds).
  check_bodies(datagram);
  return 0;
}
