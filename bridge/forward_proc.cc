// The bridge's forwarding process: for every stream the TLS process opens, a
// TCP connection to --vault-addr, with bytes passed unchanged both ways. It
// holds no key and never calls OpenSSL.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <unordered_map>
#include <vector>

#include "bridge/bridge.h"
#include "bridge/procs.h"
#include "shared/base/log.h"
#include "shared/os/net.h"
#include "shared/proc/child.h"
#include "shared/stream/splice.h"
#include "shared/wire/limits.h"
#include "shared/wire/origin.h"
#include "shared/wire/proxy_header.h"

namespace ct::bridge {

namespace {

// The process's budget for stream data (session.h CreditPool).
CreditPool g_budget{0};

// Seccomp allowlist beyond the common set: one TCP connection to OpenBao per
// stream. Landlock (where the kernel has it) narrows connect() to the port of
// --vault-addr. No open(), never OpenSSL.
constexpr uint64_t kTypeMask = ~uint64_t{SOCK_NONBLOCK | SOCK_CLOEXEC};
const SyscallRule kSyscalls[] = {
    // socket: TCP only. The type may carry SOCK_NONBLOCK/SOCK_CLOEXEC and
    // nothing else; protocol 0 or IPPROTO_TCP (not MPTCP, SCTP, UDP or raw).
    allow_if("socket", "a TCP socket per stream (IPv4)", arg_eq(0, AF_INET),
             arg_masked(1, kTypeMask, SOCK_STREAM), arg_eq(2, 0)),
    allow_if("socket", "a TCP socket per stream (IPv4)", arg_eq(0, AF_INET),
             arg_masked(1, kTypeMask, SOCK_STREAM), arg_eq(2, IPPROTO_TCP)),
    allow_if("socket", "a TCP socket per stream (IPv6)", arg_eq(0, AF_INET6),
             arg_masked(1, kTypeMask, SOCK_STREAM), arg_eq(2, 0)),
    allow_if("socket", "a TCP socket per stream (IPv6)", arg_eq(0, AF_INET6),
             arg_masked(1, kTypeMask, SOCK_STREAM), arg_eq(2, IPPROTO_TCP)),
    {"connect", "to --vault-addr"},
    allow_if("getsockopt", "SO_ERROR of a non-blocking connect, or of a socket that reported one",
             arg_eq(1, SOL_SOCKET), arg_eq(2, SO_ERROR)),
    {"shutdown", "half-close towards OpenBao after the stream's FIN"},
};

class ForwardProcess final : public ChildBase {
 public:
  ForwardProcess() : ChildBase(kProcs, ProcRole::kForward, &g_budget) {}

 private:
  bool on_message(IpcMessage& m) noexcept override {
    switch (m.type) {
      case Msg::kSettings: {
        auto hp = parse_host_port(settings_.upstream);
        auto addr = hp ? numeric_addr(*hp) : std::nullopt;
        if (!addr) return false;  // the parent resolves it; anything else is a bug
        upstream_ = *addr;
        enter_sandbox(forward_sandbox(hp->port));
        send(Msg::kReady, {});
        return true;
      }
      default:
        return false;
    }
  }

  void open_upstream(Link& l, uint32_t id, const Origin& origin) {
    const std::string uid = origin.stream_id != 0 ? stream_uid_hex(origin.stream_id) : "-";
    bool in_progress = false;
    auto r = connect_tcp(upstream_, &in_progress);
    if (!r) {
      LOG_INFO_THROTTLED(connect_log_, "stream=%u uid=%s cannot connect to %s: %s", id, uid.c_str(),
                         upstream_.str().c_str(), r.what().c_str());
      const int err = r.error().code;
      l.session().reset(id,
                        err == EMFILE || err == ENFILE ? Code::kResource : Code::kUpstreamRefused);
      return;
    }
    UniqueFd fd = std::move(r).value();
    tune_stream_socket(fd.get());
    // OpenBao aborting the connection is UPSTREAM_RESET, so that the broker's
    // stream_resets_total does not count it as a wrapper's cancel.
    Splice* sp = splices_.add(l, id, std::move(fd), in_progress, Code::kUpstreamReset);
    LOG_DEBUG("stream=%u uid=%s from %s to OpenBao", id, uid.c_str(),
              origin.source ? origin.source->str().c_str() : "an unknown address");
    if (!settings_.proxy_protocol) return;
    // --proxy-protocol: the header goes first, before the wrapper's first
    // byte (docs/protocol.md §3a). Without the wrapper's address it is LOCAL:
    // OpenBao sees the connection as ours, as without the header.
    // An empty origin is the health probe's (our own connection) or an older
    // broker's stream (the TLS process said so when the link came up).
    if (!proxy_v2_has_addresses(origin) && !origin.empty() && !local_logged_) {
      local_logged_ = true;
      LOG_WARN(
          "stream=%u uid=%s: the broker sent no wrapper address: OpenBao gets PROXY "
          "LOCAL headers for such streams (said once)",
          id, uid.c_str());
    }
    sp->set_prefix(encode_proxy_v2(origin));
  }

  // OpenBao is dialled at the stream's first byte (the first plaintext byte
  // with --service-cert), not at its open: a wrapper that connects and says
  // nothing, or never finishes its TLS handshake, costs OpenBao nothing.
  // True when the event was about a stream not yet connected and is done with.
  bool held_until_first_byte(Link& l, const Event& ev) {
    if (ev.kind == Event::kOpened) {
      // Its origin (§3a; at most kMaxOriginPayload bytes) waits with it.
      unconnected_[ev.stream].assign(ev.data.begin(), ev.data.end());
      return true;
    }
    auto it = unconnected_.find(ev.stream);
    if (it == unconnected_.end()) return false;
    switch (ev.kind) {
      case Event::kData: {
        const Origin origin = decode_origin(it->second, nullptr).value_or(Origin{});
        unconnected_.erase(it);
        open_upstream(l, ev.stream, origin);  // the splice queues the bytes while it connects
        return false;                         // and takes them now
      }
      case Event::kFin:
        // Closed before it said anything: close ours too, no dial.
        unconnected_.erase(ev.stream);
        l.session().close_write(ev.stream);
        return true;
      case Event::kReset:
        unconnected_.erase(ev.stream);
        return true;
      default:
        return true;
    }
  }

  void on_link_events(Link& l) noexcept override {
    route_to_splices(l, splices_, [&](const Event& ev) { return held_until_first_byte(l, ev); });
  }

  void on_link_closed(Link& l) noexcept override {
    log::msg(channel_end_level(l),
             "data channel to the TLS process closed: %s; closing %zu upstream connections",
             l.close_reason().c_str(), splices_.streams_on(l));
    splices_.abort_all(l);
    unconnected_.clear();
    if (&l == local_.get()) {
      end_if_broken(*local_);
      loop_.retire(std::move(local_));
    }
  }

  void on_tick(TimePoint) noexcept override {}
  // The streams finish on their own (the TLS process drains the broker's).
  void on_drain() noexcept override {}
  bool drained() noexcept override {
    if (!splices_.empty() || !unconnected_.empty()) return false;
    if (local_) local_->flush();
    return true;
  }
  TimePoint next_deadline() const override { return TimePoint::max(); }
  void after_batch() noexcept override {
    splices_.flush();  // first: the credit it returns leaves in the same flush below
    if (local_) local_->flush();
  }

  SockAddr upstream_;
  log::Throttle connect_log_;  // "cannot connect": OpenBao down fails every wrapper
  SpliceTable splices_{loop_};
  // Streams opened by the TLS process whose first byte has not come yet.
  // With the origin its OPEN carried.
  std::unordered_map<uint32_t, std::vector<uint8_t>> unconnected_;
  bool local_logged_ = false;  // the LOCAL header's reason was logged
};

}  // namespace

SandboxSpec forward_sandbox(uint16_t upstream_port) {
  SandboxSpec s = child_sandbox(kProcs.forward, kSyscalls);
  s.connect_port = upstream_port;  // Landlock: OpenBao's port and no other
  return s;
}

int forward_main() {
  return run_child<ForwardProcess>();
}

}  // namespace ct::bridge
