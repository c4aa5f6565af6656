// The broker's forwarding process: accepts wrapper connections on
// --service-listen and turns each into a stream on the data channel to the
// TLS process. It holds no key and never calls OpenSSL; it sees only the
// wrappers' bytes, which it passes on unchanged.
#include <fcntl.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <cerrno>
#include <map>
#include <memory>
#include <random>

#include "broker/broker.h"
#include "broker/forward_metrics.h"
#include "broker/procs.h"
#include "shared/base/log.h"
#include "shared/os/admission.h"
#include "shared/os/net.h"
#include "shared/proc/child.h"
#include "shared/stream/splice.h"
#include "shared/wire/limits.h"
#include "shared/wire/origin.h"

namespace ct::broker {

namespace {

// The process's --memory-budget (static: sessions retired into the loop's
// graveyard give their credit back after the process object is gone).
CreditPool g_budget{0};

// Seccomp allowlist beyond the common set: accept and tune local sockets.
// No socket(), no connect(), no open(), and never OpenSSL.
const SyscallRule kSyscalls[] = {
    {"accept4", "wrapper connections, and /metrics scrapes"},
    allow_if("getsockopt", "SO_ERROR of a wrapper socket that reported an error",
             arg_eq(1, SOL_SOCKET), arg_eq(2, SO_ERROR)),
    {"shutdown", "half-close towards a wrapper after the stream's FIN"},
    {"getsockname", "the address each wrapper reached, for its stream's origin"},
};

// A wrapper refused at accept is closed with an RST (SO_LINGER {1, 0}): a
// FIN straight after the connect could pass for an empty answer, a reset is
// plainly a refusal, which clients retry.
void refuse(UniqueFd fd) {
  const linger abort_close{1, 0};
  (void)setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &abort_close, sizeof abort_close);
}

// The service port: no handshake at the broker (the wrapper's TLS, if any,
// ends at the bridge), so every wrapper is "established" at accept, with a
// per-source cap set by --max-wrappers-per-source, and a total that leaves
// kFdsKeptApart of the process's fds to everything else.
AdmissionLimits service_admission(uint32_t per_source, size_t fd_limit) {
  AdmissionLimits l;
  l.established =
      std::min(limits::kMaxWrapperConns,
               fd_limit > limits::kFdsKeptApart + 1 ? fd_limit - limits::kFdsKeptApart : size_t{1});
  l.established_per_source = per_source != 0 ? per_source : limits::kDefaultWrappersPerSource;
  return l;
}

class ForwardProcess final : public ChildBase {
 public:
  ForwardProcess() : ChildBase(kProcs, ProcRole::kForward, &g_budget) {
    // Drawn before the sandbox; a prefix of 0 still makes ids that are not 0.
    uid_prefix_ = static_cast<uint32_t>(std::random_device{}());
    // A spare fd to give back when accept() hits EMFILE, so the listener can
    // take the pending connection off the queue and close it instead of
    // spinning on a level-triggered event it cannot clear (FI-22, libuv#315).
    spare_.reset(fcntl(ctl_.fd(), F_DUPFD_CLOEXEC, 0));
    // Read before the sandbox (which has no getrlimit).
    rlimit r{};
    if (getrlimit(RLIMIT_NOFILE, &r) == 0 && r.rlim_cur != RLIM_INFINITY)
      fd_limit_ = static_cast<size_t>(r.rlim_cur);
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
        mstate_.fwd.beacons = settings_.beacons;
        enter_sandbox(forward_sandbox(0));
        send(Msg::kReady, {});
        return true;
      }
      case Msg::kListener: {
        auto o = decode_listener_options(m.body);
        if (!o) return false;
        listener_.self = this;
        listener_.fd = std::move(m.fd);
        svc_ = Admission(service_admission(o->max_per_source, fd_limit_));
        LOG_INFO("at most %zu wrapper connections, %zu per source address",
                 svc_.limits().established, svc_.limits().established_per_source);
        update_listener();
        return true;
      }
      case Msg::kMetricsListener: {
        auto o = decode_listener_options(m.body);
        if (!o) return false;
        auto& slot = o->probes_only ? probes_ : metrics_;
        if (slot) return false;  // once each
        slot = std::make_unique<MetricsServer>(loop_, std::move(m.fd), ctl_.fd(),
                                               o->probes_only != 0, mstate_);
        return true;
      }
      case Msg::kStats: {
        auto s = decode_metrics(m.body, &mstate_.certs);
        if (!s) return false;
        mstate_.tls = std::move(*s);
        return true;
      }
      default:
        return false;
    }
  }

  void on_drain() noexcept override {
    mstate_.fwd.draining = true;  // readiness goes false first
    update_listener();
    listener_.fd.reset();  // new wrappers are refused, not queued until we exit
    LOG_INFO("draining: %zu wrapper connections open", splices_.size());
  }

  void on_data_channel() noexcept override { update_listener(); }

  // Wrappers are accepted only while a data channel exists and the TLS
  // process's HELLO on it is in; otherwise they wait in the kernel's backlog
  // until it is. An OPEN sent before that HELLO carries no origin
  // (docs/protocol.md §3a): a wrapper accepted in that window would reach
  // OpenBao as the bridge itself.
  // The listener is also out of epoll while the service port's pool is full
  // (kMaxWrapperConns): wrappers then wait in the backlog, none is accepted
  // and closed.
  void update_listener() {
    const bool want =
        listener_.fd && local_ && !local_->closed() && local_->session().ready() && !draining_;
    const bool room = svc_.accepting(Clock::now()) || release_closed_wrappers(nullptr);
    if (want && !room && listener_.active) {
      svc_.count(Refusal::kPaused);
      LOG_WARN_THROTTLED(refuse_log_, "service port paused: %zu wrapper connections open",
                         svc_.established());
    }
    if ((want && room) == listener_.active) return;
    listener_.active = want && room;
    if (listener_.active)
      loop_.add(listener_.fd.get(), EPOLLIN, &listener_);
    else if (listener_.fd)
      loop_.del(listener_.fd.get());
  }

  // Gives back the admission slots of wrappers whose stream has ended (of one
  // source, or of all). The splices own the sockets; a stream that no longer
  // exists on the data channel means its socket is closed or closing.
  // Returns whether anything was released.
  bool release_closed_wrappers(const SourceKey* only) {
    bool any = false;
    for (auto it = by_source_.begin(); it != by_source_.end();) {
      if (only != nullptr && it->first != *only) {
        ++it;
        continue;
      }
      auto& streams = it->second;
      for (size_t i = 0; i < streams.size();) {
        if (local_ && local_->session().stream_exists(streams[i].first)) {
          i++;
          continue;
        }
        svc_.on_closed(streams[i].second);
        streams[i] = streams.back();
        streams.pop_back();
        any = true;
      }
      it = streams.empty() ? by_source_.erase(it) : std::next(it);
    }
    return any;
  }

  void forget_all_wrappers() {
    for (auto& [src, streams] : by_source_)
      for (auto& [stream, id] : streams) svc_.on_closed(id);
    by_source_.clear();
  }

  void accept_wrappers() noexcept {
    for (int i = 0; i < 64 && listener_.active; i++) {
      sockaddr_storage peer{};
      bool shed = false;
      UniqueFd fd = accept_peer(listener_.fd.get(), &peer, &spare_, ctl_.fd(), &shed);
      if (!fd) {
        if (shed) {
          svc_.count(Refusal::kFdLimit);
          LOG_WARN_THROTTLED(refuse_log_,
                             "out of file descriptors: closing new wrapper connections (%zu open)",
                             splices_.size());
          continue;
        }
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
          LOG_WARN_ERRNO(errno, "accept on the service listener");
        break;
      }
      auto src = source_key(peer);
      if (!src) {
        refuse(std::move(fd));
        continue;
      }
      const Admission::Id aid = ++next_wrapper_;
      auto d = svc_.on_accept(aid, *src, Clock::now());
      if (!d.admit && d.why == Refusal::kPerSource && release_closed_wrappers(&*src))
        d = svc_.on_accept(aid, *src, Clock::now());
      if (!d.admit) {
        LOG_WARN_THROTTLED(refuse_log_, "wrapper connection from %s refused: %s",
                           src->str().c_str(), refusal_name(d.why));
        refuse(std::move(fd));
        continue;
      }
      // The stream's origin (docs/protocol.md §3a): the address that was just
      // admitted (the same one the per-source cap counted), the address it
      // reached, this stream's unique id and the cluster's name.
      Origin origin;
      origin.source = origin_addr(peer);
      origin.dest = local_origin_addr(fd.get());
      origin.stream_id = next_uid();
      origin.cluster = settings_.cluster_name;
      const uint32_t id = local_->session().open(encode_origin(origin));
      if (id == 0) {
        svc_.on_closed(aid);
        LOG_WARN_THROTTLED(refuse_log_, "wrapper refused: %s",
                           "no stream id available on the data channel");
        refuse(std::move(fd));
        continue;
      }
      LOG_DEBUG("stream=%u uid=%s wrapper from %s to %s", id,
                stream_uid_hex(origin.stream_id).c_str(),
                origin.source ? origin.source->str().c_str() : "?",
                origin.dest ? origin.dest->str().c_str() : "?");
      by_source_[*src].emplace_back(id, aid);
      tune_stream_socket(fd.get());
      mstate_.fwd.wrapper_connections_total++;
      splices_.add(*local_, id, std::move(fd), false, Code::kCancel);
    }
    update_listener();
    publish_counts();
  }

  // A stream's unique id: this process's random 32-bit prefix and a count,
  // so that ids from replicas and restarts do not collide in OpenBao's log.
  uint64_t next_uid() {
    if (++uid_count_ == 0) uid_count_ = 1;
    return (uint64_t{uid_prefix_} << 32) | uid_count_;
  }

  void publish_counts() {
    for (size_t r = 0; r < kRefusalKinds; r++)
      mstate_.fwd.service_refusals[r] = svc_.refused(static_cast<Refusal>(r));
  }

  void on_link_events(Link& l) noexcept override {
    bool ready = false;  // the TLS process's HELLO: wrappers may be accepted now
    route_to_splices(l, splices_, [&ready](const Event& ev) {
      if (ev.kind == Event::kReady) ready = true;
      return ev.kind == Event::kReady;
    });
    if (ready) update_listener();
  }

  void on_link_closed(Link& l) noexcept override {
    log::msg(channel_end_level(l),
             "data channel to the TLS process closed: %s; resetting %zu wrapper connections",
             l.close_reason().c_str(), splices_.streams_on(l));
    splices_.abort_all(l);
    if (&l == local_.get()) {
      forget_all_wrappers();  // their streams died with the channel
      end_if_broken(*local_);
      loop_.retire(std::move(local_));
    }
    update_listener();
  }

  void on_tick(TimePoint now) noexcept override {
    if (metrics_) metrics_->tick(now);
    if (probes_) probes_->tick(now);
    if (now >= next_sweep_) {
      // Keeps the per-source table as small as the open wrappers, and lets a
      // paused listener resume once wrappers have gone.
      release_closed_wrappers(nullptr);
      update_listener();
      publish_counts();
      next_sweep_ = now + kSweepInterval;
    }
  }
  bool drained() noexcept override {
    if (!splices_.empty()) return false;
    if (local_) local_->flush();
    return true;
  }
  TimePoint next_deadline() const override {
    TimePoint t = by_source_.empty() ? TimePoint::max() : next_sweep_;
    if (metrics_) t = std::min(t, metrics_->next_deadline());
    if (probes_) t = std::min(t, probes_->next_deadline());
    return t;
  }
  void after_batch() noexcept override {
    splices_.flush();  // first: the credit it returns leaves in the same flush below
    if (local_) local_->flush();
  }

  Listener listener_;
  SpliceTable splices_{loop_};
  MetricsState mstate_;
  std::unique_ptr<MetricsServer> metrics_, probes_;
  UniqueFd spare_;
  size_t fd_limit_ = limits::kMaxWrapperConns + limits::kFdsKeptApart;
  Admission svc_{service_admission(0, fd_limit_)};
  Admission::Id next_wrapper_ = 0;
  uint32_t uid_prefix_ = 0;
  uint32_t uid_count_ = 0;
  // Open wrappers by source: (data-channel stream id, admission id).
  std::map<SourceKey, std::vector<std::pair<uint32_t, Admission::Id>>> by_source_;
  static constexpr auto kSweepInterval = std::chrono::seconds(1);
  TimePoint next_sweep_{};
  log::Throttle refuse_log_;
};

}  // namespace

// The upstream port is the bridge's: the broker's forwarding process connects nowhere.
SandboxSpec forward_sandbox(uint16_t) {
  return child_sandbox(kProcs.forward, kSyscalls);
}

int forward_main() {
  return run_child<ForwardProcess>();
}

}  // namespace ct::broker
