// The broker's TLS process: accepts bridge connections on --bridge-listen,
// runs mutual TLS and the link session on each, and relays every stream the
// forwarding process opens (one per wrapper) to the least loaded bridge.
// Wrappers that arrive while no bridge is connected wait here, up to
// --pending-timeout, and are served the moment one connects.
#include <sys/socket.h>

#include <cerrno>
#include <deque>
#include <map>
#include <memory>
#include <random>

#include "broker/broker.h"
#include "shared/child.h"
#include "shared/limits.h"
#include "shared/log.h"
#include "shared/metrics.h"
#include "shared/net.h"
#include "shared/relay.h"
#include "shared/tls_context.h"
#include "shared/tls_link.h"

namespace ct::broker {

namespace {

// Bridges connected or handshaking at once: a handshake flood from the
// internet cannot grow this process beyond it (T-13).
constexpr size_t kMaxBridgeConns = 64;

// Seccomp allowlist beyond the common set (shared/sandbox.cc). No socket(),
// no connect(), no open(): this process only uses fds it was handed.
const SyscallRule kSyscalls[] = {
    {"accept4", "bridge connections on the listener the parent bound"},
    {"setsockopt", "TCP_NODELAY, keepalive and TCP_USER_TIMEOUT on bridge links"},
    {"shutdown", "closing a bridge link"},
};

const std::vector<MsgRule> kAccepts = {
    {Msg::kSettings, false, 4096},
    {Msg::kMaterial, false, static_cast<uint32_t>(limits::kMaxIpcMessage)},
    {Msg::kListener, true, 0},
    {Msg::kPeerChannel, true, 0},
    {Msg::kPeerRing, true, 0},
    {Msg::kDrain, false, 0},
};

class TlsProcess final : public ChildBase, public Link::Owner {
 public:
  TlsProcess() : ChildBase("cloudtaser-broker", "tls", kAccepts) { tls_global_init(); }

 private:
  struct Listener : Loop::Handler {
    TlsProcess* self = nullptr;
    UniqueFd fd;
    void on_io(uint32_t) noexcept override { self->accept_bridges(); }
  };

  bool on_message(IpcMessage& m) noexcept override {
    switch (m.type) {
      case Msg::kSettings:
        return true;
      case Msg::kMaterial: {
        auto mat = decode_material(m.body);
        if (!mat) return false;
        std::string err;
        auto ctx = TlsContext::create(TlsContext::Side::kServer, *mat, "", &err);
        wipe_material(*mat);
        if (!ctx) {
          send(Msg::kMaterialError, as_bytes(err));
          return true;
        }
        // New handshakes use the new context; existing links keep theirs alive.
        ctx_ = std::shared_ptr<TlsContext>(std::move(ctx));
        close_untrusted_links();
        // OpenSSL is initialised and a context built: from here on no file,
        // no new socket. Every later message (and all network input) is
        // handled inside the sandbox.
        enter_sandbox(tls_sandbox());
        LOG_INFO("certificate material loaded, own pin %s, %zu bridge pin(s)",
                 ctx_->own_pin().c_str(), ctx_->pins().size());
        send(Msg::kReady, {});
        return true;
      }
      case Msg::kListener:
        if (listener_.fd) return false;  // once
        listener_.self = this;
        listener_.fd = std::move(m.fd);
        if (!draining_) loop_.add(listener_.fd.get(), EPOLLIN, &listener_);
        return true;
      case Msg::kPeerChannel:
        return set_local(std::move(m.fd));
      case Msg::kDrain:
        start_drain();
        return true;
      default:
        return false;
    }
  }

  bool set_local(UniqueFd fd) {
    SessionConfig c;
    c.role = Role::kTlsProcess;
    c.opener = false;  // the forwarding process opens a stream per wrapper
    c.stream_window = limits::kPendingStreamWindow;
    c.ping_interval = Duration::zero();
    c.instance = random_instance();
    auto next = open_data_channel(*this, std::move(fd), c);
    if (!next) return false;  // PEER_RING comes first
    if (local_) {
      relays_.link_closed(local_.get(), Code::kCancel);
      local_->close("replaced by a new data channel");
    }
    local_ = std::move(next);
    return true;
  }

  // ---------------------------------------------------------------- bridges
  void accept_bridges() noexcept {
    for (int i = 0; i < 16; i++) {
      UniqueFd fd(accept4(listener_.fd.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      if (!fd) {
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
          LOG_WARN_ERRNO(errno, "accept on the bridge listener");
        return;
      }
      if (!ctx_ || bridges_.size() >= kMaxBridgeConns || draining_) {
        LOG_WARN("refusing a bridge connection: %s", draining_ ? "draining"
                                                     : !ctx_   ? "no material"
                                                               : "too many bridge connections");
        continue;  // closes it
      }
      tune_link_socket(fd.get(), 15000);
      const uint64_t id = ++next_conn_;
      SessionConfig c;
      c.role = Role::kBroker;
      c.opener = true;
      c.instance = random_instance();
      bridges_[id] = std::make_unique<TlsLink>(loop_, *this, id, ctx_, ctx_->get(), std::move(fd),
                                               true, "", c, Clock::now());
      LOG_DEBUG("conn=%llu bridge connection accepted", static_cast<unsigned long long>(id));
    }
  }

  // After a reload: a link whose bridge the new material no longer admits (a
  // removed pin, another CA) ends now, not at its next handshake.
  void close_untrusted_links() noexcept {
    std::vector<TlsLink*> gone, unverified;
    for (auto& [id, l] : bridges_) {
      std::string why;
      if (l->closed()) continue;
      // A handshake begun before the reload would finish under the old
      // material: it is started again (the peer redials) under the new one.
      if (!l->established()) {
        unverified.push_back(l.get());
        continue;
      }
      if (ctx_->peer_trusted(l->ssl(), &why)) continue;
      LOG_WARN("conn=%llu bridge no longer admitted by the reloaded material: %s",
               static_cast<unsigned long long>(id), why.c_str());
      if (l->has_session()) l->session().go_away(Code::kRefused);
      l->flush();  // the GOAWAY, then close_notify: the peer learns why
      l->shutdown_tls();
      gone.push_back(l.get());
    }
    for (TlsLink* l : gone) l->close("bridge no longer admitted after a reload");
    for (TlsLink* l : unverified) l->close("handshake begun before a reload");
  }

  TlsLink* pick_bridge() {
    TlsLink* best = nullptr;
    for (auto& [id, l] : bridges_) {
      if (l->closed() || !l->has_session() || !l->session().ready() ||
          l->session().goaway_received() || l->session().goaway_sent())
        continue;
      if (best == nullptr || l->session().open_streams() < best->session().open_streams())
        best = l.get();
    }
    return best;
  }

  void assign(Relay* r) {
    if (TlsLink* b = pick_bridge()) {
      const uint32_t id = b->session().open();
      if (id != 0) {
        relays_.attach(r, b, id);
        LOG_DEBUG("conn=%llu stream=%u opened for wrapper stream %u",
                  static_cast<unsigned long long>(b->id()), id, r->a.id);
        return;
      }
    }
    if (pending_.size() >= limits::kMaxPendingOpens || draining_) {
      LOG_WARN("stream=%u refused: no bridge and %zu wrappers already waiting", r->a.id,
               pending_.size());
      relays_.reset(r, Code::kNoBridge);
      return;
    }
    if (pending_.empty())
      LOG_INFO("no bridge connected: holding wrappers for up to %u ms",
               settings_.pending_timeout_ms);
    pending_.push_back(
        {r->a.id, Clock::now() + std::chrono::milliseconds(settings_.pending_timeout_ms)});
  }

  void serve_pending() {
    while (!pending_.empty() && pick_bridge() != nullptr) {
      const auto p = pending_.front();
      pending_.pop_front();
      Relay* r = local_ ? relays_.find(local_.get(), p.stream) : nullptr;
      if (r != nullptr && r->b.link == nullptr) assign(r);
    }
  }

  void report_status() {
    uint32_t up = 0;
    for (auto& [id, l] : bridges_)
      if (!l->closed() && l->has_session() && l->session().ready()) up++;
    if (up == reported_up_) return;
    reported_up_ = up;
    Status s{up, up == 0 ? "no bridge connected" : std::to_string(up) + " bridge(s) connected"};
    send(Msg::kStatus, encode_status(s));
    send_stats();  // readiness follows the link at once, not a second later
  }

  // ---------------------------------------------------------------- link events
  void on_link_events(Link& l) noexcept override {
    auto events = l.session().take_events();
    const bool is_local = (&l == local_.get());
    for (const Event& ev : events) {
      switch (ev.kind) {
        case Event::kReady:
          if (!is_local) {
            auto* t = static_cast<TlsLink*>(&l);
            LOG_INFO("conn=%llu bridge connected: %s", static_cast<unsigned long long>(l.id()),
                     t->peer_subject().c_str());
            report_status();
            serve_pending();
          }
          break;
        case Event::kOpened:
          if (is_local) {
            streams_total_++;
            Relay* r = relays_.create(&l, ev.stream);
            assign(r);
          }
          break;
        case Event::kData:
          relays_.on_data(&l, ev.stream, ev.data);
          break;
        case Event::kFin:
          relays_.on_fin(&l, ev.stream);
          break;
        case Event::kReset:
          count_reset(ev.code);
          relays_.on_reset(&l, ev.stream, ev.code);
          break;
        case Event::kWritable:
          relays_.on_writable(&l, ev.stream);
          break;
        case Event::kGoAway:
          LOG_INFO("conn=%llu bridge sent GOAWAY (%s): no new streams on it",
                   static_cast<unsigned long long>(l.id()),
                   std::string(code_name(ev.code)).c_str());
          break;
        case Event::kError:
          if (ev.code == Code::kNoError) {  // a clean close (a draining bridge's close_notify)
            LOG_INFO("conn=%llu %s closed cleanly", static_cast<unsigned long long>(l.id()),
                     is_local ? "data channel" : "link");
            break;
          }
          LOG_WARN("conn=%llu %s error %s: %s", static_cast<unsigned long long>(l.id()),
                   is_local ? "data channel" : "link", std::string(code_name(ev.code)).c_str(),
                   std::string(ev.what).c_str());
          if (!is_local) link_errors_[static_cast<uint32_t>(ev.code)]++;
          break;
      }
    }
  }

  void on_link_closed(Link& l) noexcept override {
    if (&l == local_.get()) {
      LOG_WARN("data channel to the forwarding process closed: %s", l.close_reason().c_str());
      relays_.link_closed(&l, Code::kCancel);
      pending_.clear();
      end_if_broken(*local_);
      loop_.retire(std::move(local_));
      return;
    }
    auto it = bridges_.find(l.id());
    if (it == bridges_.end()) return;
    auto* t = static_cast<TlsLink*>(&l);
    if (l.has_session()) {
      bytes_to_bridge_ += l.session().stats().bytes_out;
      bytes_from_bridge_ += l.session().stats().bytes_in;
    }
    if (!t->established())
      handshake_failures_[static_cast<uint32_t>(classify_handshake_failure(l.close_reason()))]++;
    if (t->established())
      LOG_INFO("conn=%llu bridge disconnected: %s (%zu streams reset)",
               static_cast<unsigned long long>(l.id()), l.close_reason().c_str(), l.relays.size());
    else
      LOG_WARN("conn=%llu bridge handshake failed: %s", static_cast<unsigned long long>(l.id()),
               l.close_reason().c_str());
    relays_.link_closed(&l, Code::kCancel);
    loop_.retire(std::move(it->second));
    bridges_.erase(it);
    report_status();
  }

  // ---------------------------------------------------------------- time, drain
  void on_tick(TimePoint now) noexcept override {
    if (local_) local_->tick(now);
    std::vector<TlsLink*> links;
    for (auto& [id, l] : bridges_) links.push_back(l.get());
    for (TlsLink* l : links) l->tick(now);
    while (!pending_.empty() && pending_.front().deadline <= now) {
      const auto p = pending_.front();
      pending_.pop_front();
      Relay* r = local_ ? relays_.find(local_.get(), p.stream) : nullptr;
      if (r != nullptr && r->b.link == nullptr) {
        LOG_INFO("stream=%u no bridge within the pending timeout: closing the wrapper", p.stream);
        pending_timeouts_++;
        count_reset(Code::kNoBridge);
        relays_.reset(r, Code::kNoBridge);
      }
    }
    if (now >= next_stats_) {
      send_stats();
      next_stats_ = now + std::chrono::seconds(1);
    }
    if (draining_ && relays_.size() == 0) {
      LOG_INFO("drained");
      flush_all();
      exit_child(0);
    }
  }

  TimePoint next_deadline() const override {
    TimePoint t = TimePoint::max();
    if (local_) t = std::min(t, local_->next_deadline());
    for (auto& [id, l] : bridges_) t = std::min(t, l->next_deadline());
    if (!pending_.empty()) t = std::min(t, pending_.front().deadline);
    return std::min(t, next_stats_);
  }

  void count_reset(Code c) { resets_[static_cast<uint32_t>(c)]++; }

  // Metric samples go to the parent (and on to the forwarding process, which
  // serves /metrics) once a second when anything changed.
  void send_stats() {
    std::vector<MetricSample> m;
    uint64_t up = 0, to = bytes_to_bridge_, from = bytes_from_bridge_;
    for (auto& [id, l] : bridges_) {
      if (!l->has_session()) continue;
      if (!l->closed() && l->session().ready()) up++;
      to += l->session().stats().bytes_out;
      from += l->session().stats().bytes_in;
    }
    m.push_back({MetricId::kBridgesConnected, 0, up});
    m.push_back({MetricId::kStreamsOpen, 0, relays_.size()});
    m.push_back({MetricId::kStreamsTotal, 0, streams_total_});
    m.push_back({MetricId::kBytesToBridge, 0, to});
    m.push_back({MetricId::kBytesFromBridge, 0, from});
    m.push_back({MetricId::kWrappersPending, 0, pending_.size()});
    m.push_back({MetricId::kPendingTimeouts, 0, pending_timeouts_});
    for (auto& [k, v] : handshake_failures_) m.push_back({MetricId::kHandshakeFailures, k, v});
    for (auto& [k, v] : resets_) m.push_back({MetricId::kResets, k, v});
    for (auto& [k, v] : link_errors_) m.push_back({MetricId::kLinkErrors, k, v});
    auto body = encode_metrics(m);
    if (body == last_stats_) return;
    send(Msg::kStats, body);
    last_stats_ = std::move(body);
  }

  void flush_all() noexcept {
    if (local_) local_->flush();
    for (auto& [id, l] : bridges_) l->flush();
  }

  void after_batch() noexcept override { flush_all(); }

  void start_drain() {
    if (draining_) return;
    draining_ = true;
    if (listener_.fd) {
      loop_.del(listener_.fd.get());
      listener_.fd.reset();
    }
    for (auto& [id, l] : bridges_)
      if (l->has_session()) l->session().go_away(Code::kShutdown);
    LOG_INFO("draining: %zu streams open", relays_.size());
  }

  struct Pending {
    uint32_t stream;
    TimePoint deadline;
  };
  std::shared_ptr<TlsContext> ctx_;
  Listener listener_;
  std::unique_ptr<PlainLink> local_;
  std::map<uint64_t, std::unique_ptr<TlsLink>> bridges_;
  RelayTable relays_;
  std::deque<Pending> pending_;
  uint64_t next_conn_ = 0;
  // Counters for /metrics (bytes of closed links are folded in when they close).
  uint64_t streams_total_ = 0, pending_timeouts_ = 0;
  uint64_t bytes_to_bridge_ = 0, bytes_from_bridge_ = 0;
  std::map<uint32_t, uint64_t> handshake_failures_, resets_, link_errors_;
  std::vector<uint8_t> last_stats_;
  TimePoint next_stats_{};
  uint32_t reported_up_ = UINT32_MAX;
  bool draining_ = false;
};

}  // namespace

SandboxSpec tls_sandbox() {
  SandboxSpec s;
  s.process = "cloudtaser-broker tls";
  s.syscalls = kSyscalls;
  s.max_fds = 256;  // kMaxBridgeConns links, the listener, channels, the loop
  return s;
}

int tls_main() {
  TlsProcess p;
  return p.run();
}

}  // namespace ct::broker
