// The broker's forwarding process: accepts wrapper connections on
// --service-listen and turns each into a stream on the data channel to the
// TLS process. It holds no key and never calls OpenSSL; it sees only the
// wrappers' bytes, which it passes on unchanged.
#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <map>
#include <memory>
#include <random>

#include "broker/broker.h"
#include "broker/forward_metrics.h"
#include "shared/child.h"
#include "shared/limits.h"
#include "shared/log.h"
#include "shared/net.h"
#include "shared/splice.h"

namespace ct::broker {

namespace {

// The process's --memory-budget (static: sessions retired into the loop's
// graveyard give their credit back after the process object is gone).
CreditPool g_budget{0};

// Seccomp allowlist beyond the common set: accept and tune local sockets.
// No socket(), no connect(), no open(), and never OpenSSL.
const SyscallRule kSyscalls[] = {
    {"accept4", "wrapper connections, and /metrics scrapes"},
    {"getsockopt", "SO_ERROR of a wrapper socket that reported an error"},
    {"setsockopt", "TCP_NODELAY; SO_LINGER 0: a stream reset or our death is a TCP RST"},
    {"shutdown", "half-close towards a wrapper after the stream's FIN"},
};

const std::vector<MsgRule> kAccepts = {
    {Msg::kSettings, false, 4096}, {Msg::kListener, true, 0}, {Msg::kPeerChannel, true, 0},
    {Msg::kPeerRing, true, 0},     {Msg::kDrain, false, 0},   {Msg::kMetricsListener, true, 0},
    {Msg::kStats, false, 8192},
};

class ForwardProcess final : public ChildBase, public Link::Owner {
 public:
  ForwardProcess() : ChildBase("cloudtaser-broker", "forward", kAccepts) {
    // A spare fd to give back when accept() hits EMFILE, so the listener can
    // take the pending connection off the queue and close it instead of
    // spinning on a level-triggered event it cannot clear (FI-22, libuv#315).
    spare_.reset(fcntl(ctl_.fd(), F_DUPFD_CLOEXEC, 0));
  }

 private:
  struct Listener : Loop::Handler {
    ForwardProcess* self = nullptr;
    UniqueFd fd;
    bool active = false;
    void on_io(uint32_t) noexcept override { self->accept_wrappers(); }
  };

  bool on_message(IpcMessage& m) noexcept override {
    switch (m.type) {
      case Msg::kSettings: {
        g_budget.set_limit(uint64_t{settings_.memory_budget_mib} << 20);
        enter_sandbox(forward_sandbox(0));
        send(Msg::kReady, {});
        return true;
      }
      case Msg::kListener:
        if (listener_.fd) return false;
        listener_.self = this;
        listener_.fd = std::move(m.fd);
        update_listener();
        return true;
      case Msg::kPeerChannel:
        return set_local(std::move(m.fd));
      case Msg::kMetricsListener:
        if (metrics_) return false;  // once
        metrics_ = std::make_unique<MetricsServer>(loop_, std::move(m.fd));
        return true;
      case Msg::kStats: {
        auto s = decode_metrics(m.body);
        if (!s) return false;
        if (metrics_) metrics_->set_tls_samples(std::move(*s));
        return true;
      }
      case Msg::kDrain:
        draining_ = true;
        if (metrics_) metrics_->counters().draining = true;  // readiness goes false first
        update_listener();
        listener_.fd.reset();  // new wrappers are refused, not queued until we exit
        LOG_INFO("draining: %zu wrapper connections open", splices_.size());
        return true;
      default:
        return false;
    }
  }

  bool set_local(UniqueFd fd) {
    SessionConfig c;
    c.role = Role::kForwardProcess;
    c.opener = true;
    c.stream_window = limits::kLocalStreamWindow;
    c.ping_interval = Duration::zero();
    c.pool = &g_budget;
    auto next = open_data_channel(*this, std::move(fd), c);
    if (!next) return false;  // PEER_RING comes first
    if (local_) local_->close("replaced by a new data channel");
    local_ = std::move(next);
    update_listener();
    return true;
  }

  // Wrappers are accepted only while a data channel exists; otherwise they
  // wait in the kernel's backlog until the TLS process is back.
  void update_listener() {
    const bool want = listener_.fd && local_ && !local_->closed() && !draining_;
    if (want == listener_.active) return;
    listener_.active = want;
    if (want)
      loop_.add(listener_.fd.get(), EPOLLIN, &listener_);
    else if (listener_.fd)
      loop_.del(listener_.fd.get());
  }

  void accept_wrappers() noexcept {
    for (int i = 0; i < 64 && listener_.active; i++) {
      UniqueFd fd(accept4(listener_.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) {
        if (errno == EMFILE || errno == ENFILE) {
          shed_one();
          return;
        }
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
          LOG_WARN_ERRNO(errno, "accept on the service listener");
        return;
      }
      const uint32_t id = local_->session().open();
      if (id == 0) {
        LOG_WARN("wrapper refused: no stream id available on the data channel");
        continue;
      }
      tune_stream_socket(fd.get());
      if (metrics_) metrics_->counters().wrapper_connections_total++;
      splices_.add(*local_, id, std::move(fd), false);
    }
  }

  void shed_one() noexcept {
    if (now_ms() - last_emfile_log_ms_ > 1000) {
      LOG_WARN("out of file descriptors: closing new wrapper connections (%zu open)",
               splices_.size());
      last_emfile_log_ms_ = now_ms();
    }
    spare_.reset();
    UniqueFd fd(accept4(listener_.fd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    fd.reset();
    spare_.reset(fcntl(ctl_.fd(), F_DUPFD_CLOEXEC, 0));
  }

  static int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch())
        .count();
  }

  void on_link_events(Link& l) noexcept override {
    auto events = l.session().take_events();
    for (const Event& ev : events) {
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
    LOG_WARN("data channel to the TLS process closed: %s; resetting %zu wrapper connections",
             l.close_reason().c_str(), l.splices.size());
    splices_.abort_all(l);
    if (&l == local_.get()) {
      end_if_broken(*local_);
      loop_.retire(std::move(local_));
    }
    update_listener();
  }

  void on_tick(TimePoint now) noexcept override {
    if (metrics_) metrics_->tick(now);
    if (draining_ && splices_.empty()) {
      if (local_) local_->flush();
      LOG_INFO("drained");
      exit_child(0);
    }
  }
  TimePoint next_deadline() const override {
    return metrics_ ? metrics_->next_deadline() : TimePoint::max();
  }
  void after_batch() noexcept override {
    splices_.flush();  // first: the credit it returns leaves in the same flush below
    if (local_) local_->flush();
  }

  Listener listener_;
  std::unique_ptr<PlainLink> local_;
  SpliceTable splices_{loop_};
  std::unique_ptr<MetricsServer> metrics_;
  UniqueFd spare_;
  int64_t last_emfile_log_ms_ = 0;
  bool draining_ = false;
};

}  // namespace

SandboxSpec forward_sandbox(uint16_t) {
  SandboxSpec s;
  s.process = "cloudtaser-broker forward";
  s.syscalls = kSyscalls;
  return s;
}

int forward_main() {
  ForwardProcess p;
  return p.run();
}

}  // namespace ct::broker
