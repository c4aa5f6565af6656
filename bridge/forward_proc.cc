// The bridge's forwarding process: for every stream the TLS process opens, a
// TCP connection to --vault-addr, with bytes passed unchanged both ways. It
// holds no key and never calls OpenSSL.
#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <map>
#include <memory>
#include <unordered_set>

#include "bridge/bridge.h"
#include "shared/base/log.h"
#include "shared/os/net.h"
#include "shared/proc/child.h"
#include "shared/stream/splice.h"
#include "shared/wire/limits.h"

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

const std::vector<MsgRule> kAccepts = {
    {Msg::kSettings, false, 4096},
    {Msg::kPeerChannel, true, 0},
    {Msg::kPeerRing, true, 0},
    {Msg::kDrain, false, 0},
};

class ForwardProcess final : public ChildBase, public Link::Owner {
 public:
  ForwardProcess() : ChildBase("vault-bridge", "forward", kAccepts) {}

 private:
  bool on_message(IpcMessage& m) noexcept override {
    switch (m.type) {
      case Msg::kSettings: {
        std::string err;
        auto hp = parse_host_port(settings_.upstream, &err);
        auto addr = hp ? numeric_addr(*hp) : std::nullopt;
        if (!addr) return false;  // the parent resolves it; anything else is a bug
        upstream_ = *addr;
        g_budget.set_limit(uint64_t{settings_.memory_budget_mib} << 20);
        enter_sandbox(forward_sandbox(hp->port));
        send(Msg::kReady, {});
        return true;
      }
      case Msg::kPeerChannel: {
        SessionConfig c;
        c.role = Role::kForwardProcess;
        c.opener = false;  // the TLS process opens a stream per wrapper
        c.stream_window = limits::kLocalStreamWindow;
        c.ping_interval = Duration::zero();
        c.pool = &g_budget;
        auto next = open_data_channel(*this, std::move(m.fd), c);
        if (!next) return false;  // PEER_RING comes first
        if (local_) local_->close("replaced by a new data channel");
        local_ = std::move(next);
        return true;
      }
      case Msg::kDrain:
        draining_ = true;
        return true;
      default:
        return false;
    }
  }

  void open_upstream(Link& l, uint32_t id) {
    bool in_progress = false;
    int err = 0;
    UniqueFd fd = connect_tcp(upstream_, &in_progress, &err);
    if (!fd) {
      LOG_INFO("stream=%u cannot connect to %s: %s", id, upstream_.str().c_str(),
               std::strerror(err));
      l.session().reset(id,
                        err == EMFILE || err == ENFILE ? Code::kResource : Code::kUpstreamRefused);
      return;
    }
    tune_stream_socket(fd.get());
    // OpenBao aborting the connection is UPSTREAM_RESET, so that the broker's
    // stream_resets_total does not count it as a wrapper's cancel.
    splices_.add(l, id, std::move(fd), in_progress, Code::kUpstreamReset);
  }

  void on_link_events(Link& l) noexcept override {
    auto events = l.session().take_events();
    for (const Event& ev : events) {
      // OpenBao is dialled at the stream's first byte (the first plaintext
      // byte with --service-cert), not at its open: a wrapper that connects
      // and says nothing, or never finishes its TLS handshake, costs OpenBao
      // nothing.
      if (ev.kind == Event::kOpened) {
        unconnected_.insert(ev.stream);
        continue;
      }
      if (unconnected_.count(ev.stream) != 0) {
        if (ev.kind == Event::kData) {
          unconnected_.erase(ev.stream);
          open_upstream(l, ev.stream);  // the splice queues the bytes while it connects
        } else if (ev.kind == Event::kFin) {
          // Closed before it said anything: close ours too, no dial.
          unconnected_.erase(ev.stream);
          l.session().close_write(ev.stream);
          continue;
        } else if (ev.kind == Event::kReset) {
          unconnected_.erase(ev.stream);
          continue;
        } else {
          continue;
        }
      }
      if (ev.kind == Event::kError) {
        LOG_WARN("data channel error %s: %s", std::string(code_name(ev.code)).c_str(),
                 std::string(ev.what).c_str());
        continue;
      }
      splices_.dispatch(l, ev);
    }
    // Before the data channel is read again: splices write straight from its
    // input buffer (Splice::flush).
    splices_.flush();
  }

  void on_link_closed(Link& l) noexcept override {
    LOG_WARN("data channel to the TLS process closed: %s; closing %zu upstream connections",
             l.close_reason().c_str(), splices_.streams_on(l));
    splices_.abort_all(l);
    unconnected_.clear();
    if (&l == local_.get()) {
      end_if_broken(*local_);
      loop_.retire(std::move(local_));
    }
  }

  void on_tick(TimePoint) noexcept override {
    if (draining_ && splices_.empty() && unconnected_.empty()) {
      if (local_) local_->flush();
      exit_child(0);
    }
  }
  TimePoint next_deadline() const override { return TimePoint::max(); }
  void after_batch() noexcept override {
    splices_.flush();  // first: the credit it returns leaves in the same flush below
    if (local_) local_->flush();
  }

  SockAddr upstream_;
  std::unique_ptr<PlainLink> local_;
  SpliceTable splices_{loop_};
  // Streams opened by the TLS process whose first byte has not come yet.
  std::unordered_set<uint32_t> unconnected_;
  bool draining_ = false;
};

}  // namespace

SandboxSpec forward_sandbox(uint16_t upstream_port) {
  SandboxSpec s;
  s.process = "vault-bridge forward";
  s.syscalls = kSyscalls;
  s.connect_port = upstream_port;
  s.tcp_options = true;  // setsockopt: TCP_NODELAY; SO_LINGER 0 for a reset
  return s;
}

int forward_main() {
  ForwardProcess p;
  return p.run();
}

}  // namespace ct::bridge
