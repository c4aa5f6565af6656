// The broker's TLS process: accepts bridge connections on --bridge-listen,
// runs mutual TLS and the link session on each, and relays every stream the
// forwarding process opens (one per wrapper) to the least loaded bridge.
// Wrappers that arrive while no bridge is connected wait here, up to
// --pending-timeout, and are served the moment one connects (the choice and
// the queue: broker/bridge_pool.h; the counters for /metrics: broker/stats.h).
#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <map>
#include <memory>
#include <random>
#include <set>

#include "broker/beacon_pool.h"
#include "broker/bridge_pool.h"
#include "broker/broker.h"
#include "broker/metrics.h"
#include "broker/procs.h"
#include "broker/stats.h"
#include "shared/base/log.h"
#include "shared/os/admission.h"
#include "shared/os/net.h"
#include "shared/proc/child.h"
#include "shared/stream/relay.h"
#include "shared/tls/context.h"
#include "shared/tls/link.h"
#include "shared/wire/limits.h"
#include "shared/wire/pin_rollover.h"
#include "shared/wire/rendezvous.h"

namespace ct::broker {

namespace {

// The bridge port's admission pools (shared/os/admission.h, limits in
// shared/wire/limits.h): a handshake flood from the internet cannot grow this
// process, hold the port, or take an authenticated bridge's slot.
AdmissionLimits bridge_admission() {
  AdmissionLimits l;
  l.handshakes = limits::kBridgeHandshakes;
  l.handshakes_per_source = limits::kBridgeHandshakesPerSource;
  l.handshake_deadline = limits::kBridgeHandshakeDeadline;
  l.min_age = limits::kBridgeHandshakeMinAge;
  l.established = limits::kMaxBridgeLinks;
  return l;
}

// The process's --memory-budget for stream data (session.h CreditPool).
CreditPool g_budget{0};

// Seccomp allowlist beyond the common set (shared/os/sandbox.cc). No socket(),
// no connect(), no open(): this process only uses fds it was handed.
const SyscallRule kSyscalls[] = {
    {"accept4", "bridge connections on the listener the parent bound"},
    {"shutdown", "closing a bridge link"},
};

class TlsProcess final : public ChildBase, public BridgePool<TlsLink>::Wrappers {
 public:
  TlsProcess()
      : ChildBase(kProcs, ProcRole::kTls, &g_budget),
        rng_(std::random_device{}()),
        beacon_pool_(0, 0, [this](long long lo, long long hi) {
          return std::uniform_int_distribution<long long>(lo, hi)(rng_);
        }) {
    tls_global_init();
    // A spare fd to give back when accept() hits EMFILE (net.h accept_peer).
    spare_.reset(fcntl(ctl_.fd(), F_DUPFD_CLOEXEC, 0));
  }

 private:
  struct Listener : Loop::Handler {
    TlsProcess* self = nullptr;
    UniqueFd fd;
    bool active = false;
    void on_io(uint32_t) noexcept override { self->accept_bridges(); }
  };

  bool on_message(IpcMessage& m) noexcept override {
    switch (m.type) {
      case Msg::kSettings:
        beacon_pool_ = BeaconPool(settings_.beacons.size(), settings_.beacon_pool,
                                  [this](long long lo, long long hi) {
                                    return std::uniform_int_distribution<long long>(lo, hi)(rng_);
                                  });
        return true;
      case Msg::kMaterial: {
        auto mat = decode_material(m.body);
        if (!mat) return false;
        auto ctx = TlsContext::create(TlsContext::Side::kServer, *mat, "");
        std::string err = ctx ? "" : ctx.what();
        CertState certs = ctx ? material_certs(*mat) : CertState{};
        std::unique_ptr<TlsContext> beacon;
        if (ctx && !settings_.beacons.empty()) {
          auto made = TlsContext::create_beacon(*mat);
          if (made)
            beacon = std::move(made).value();
          else
            err = "beacon CA: " + made.what();
        }
        wipe_material(*mat);
        if (err.empty()) err = key_rollover_refusal(bridges_, own_certs_, certs, "bridge");
        if (!ctx || !err.empty() || (!settings_.beacons.empty() && !beacon)) {
          send(Msg::kMaterialError, as_bytes(err));
          return true;
        }
        beacon_ctx_ = std::shared_ptr<TlsContext>(std::move(beacon));
        // New handshakes use the new context; existing links keep theirs alive.
        ctx_ = std::shared_ptr<TlsContext>(std::move(ctx).value());
        own_certs_ = std::move(certs);
        close_links_not_admitted(bridges_, *ctx_, "bridge");
        // Version 4 bridges learn our bridge pins as they are now (§5b).
        for (auto& [id, l] : bridges_)
          if (l->has_session()) l->session().set_pins(ctx_->pins());
        // OpenSSL is initialised and a context built: from here on no file,
        // no new socket. Every later message (and all network input) is
        // handled inside the sandbox.
        enter_sandbox(tls_sandbox());
        LOG_INFO("certificate material loaded, own pin %s, %zu bridge pin(s)",
                 ctx_->own_pin().c_str(), ctx_->pins().size());
        send(Msg::kReady, {});
        update_listener(Clock::now());
        return true;
      }
      case Msg::kListener:
        listener_.self = this;
        listener_.fd = std::move(m.fd);
        update_listener(Clock::now());
        return true;
      case Msg::kDialed:
        if (settings_.beacons.empty() || !beacon_pool_.dialing()) return false;  // never asked
        beacon_dialled(std::move(m.fd));
        return true;
      case Msg::kDialFailed:
        if (settings_.beacons.empty() || !beacon_pool_.dialing()) return false;
        LOG_WARN_THROTTLED(beacon_log_, "beacon %s: %s",
                           settings_.beacons.at(dialing_beacon_).c_str(),
                           std::string(m.body.begin(), m.body.end()).c_str());
        beacon_pool_.on_dial_failed(Clock::now());
        stats_.beacon_lost(dialing_beacon_);
        return true;
      default:
        return false;
    }
  }

  // ---------------------------------------------------------------- bridges
  // The listener is in epoll only while a newcomer can be admitted: with
  // material, not draining, and a handshake slot free or evictable. Otherwise
  // connections wait in the kernel's backlog (never accepted and closed).
  void update_listener(TimePoint now) noexcept {
    const bool want = listener_.fd && ctx_ && !draining_ && admission_.accepting(now);
    if (want == listener_.active) return;
    listener_.active = want;
    if (want) {
      loop_.add(listener_.fd.get(), EPOLLIN, &listener_);
      return;
    }
    if (!listener_.fd) return;
    loop_.del(listener_.fd.get());
    if (ctx_ && !draining_) {
      admission_.count(Refusal::kPaused);
      LOG_WARN_THROTTLED(pause_log_,
                         "bridge port paused: %zu handshakes in flight, none old enough to evict",
                         admission_.handshakes());
    }
  }

  void refused(Refusal r, const SourceKey& src) noexcept {
    if (r == Refusal::kEvicted)
      LOG_WARN_THROTTLED(refuse_log_,
                         "handshake pool full: the oldest handshake evicted for a "
                         "connection from %s",
                         src.str().c_str());
    else
      LOG_WARN_THROTTLED(refuse_log_, "bridge connection from %s refused: %s", src.str().c_str(),
                         refusal_name(r));
  }

  void accept_bridges() noexcept {
    for (int i = 0; i < 16 && listener_.active; i++) {
      const TimePoint now = Clock::now();
      if (!admission_.accepting(now)) break;
      sockaddr_storage peer{};
      bool shed = false;
      UniqueFd fd = accept_peer(listener_.fd.get(), &peer, &spare_, ctl_.fd(), &shed);
      if (!fd) {
        if (shed) {
          admission_.count(Refusal::kFdLimit);
          LOG_WARN_THROTTLED(refuse_log_, "bridge connection shed: out of file descriptors (%zu)",
                             bridges_.size());
          continue;
        }
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
          LOG_WARN_ERRNO(errno, "accept on the bridge listener");
        break;
      }
      auto src = source_key(peer);
      if (!src) continue;  // not TCP/IP: cannot happen on this listener
      const uint64_t id = ++next_conn_;
      const auto d = admission_.on_accept(id, *src, now);
      if (d.evict != 0) {
        if (auto it = bridges_.find(d.evict); it != bridges_.end()) {
          refused(Refusal::kEvicted, *src);
          it->second->close("evicted from the handshake pool by a newer connection");
        }
      }
      if (!d.admit) {
        refused(d.why, *src);
        continue;  // closes it
      }
      tune_link_socket(fd.get(), 15000);
      bridges_[id] = std::make_unique<TlsLink>(loop_, *this, id, std::move(fd),
                                               TlsLinkOptions{.context = ctx_,
                                                              .server = true,
                                                              .sni = "",
                                                              .session = session_config(),
                                                              .beacon = std::nullopt},
                                               Clock::now());
      LOG_LINK(LOG_DEBUG, id, "bridge connection accepted from %s", src->str().c_str());
    }
    update_listener(Clock::now());
  }

  // ---------------------------------------------------------------- beacon mode
  // Connections wait for bridges at every beacon (broker/beacon_pool.h); the
  // parent dials, this process runs the outer session to the beacon and,
  // once paired, stays the link's TLS server (docs/beacon.md).
  void dial_beacons(TimePoint now) noexcept {
    if (settings_.beacons.empty() || !ctx_ || draining_) return;
    if (auto b = beacon_pool_.due(now)) {
      dialing_beacon_ = *b;
      const uint8_t at = static_cast<uint8_t>(*b);
      send(Msg::kDialRequest, Bytes(&at, 1));
    }
  }

  void beacon_dialled(UniqueFd fd) noexcept {
    beacon_pool_.on_dialed();
    const size_t b = dialing_beacon_;
    if (draining_) {
      beacon_pool_.on_paired(b);  // not kept: its place is free again (no more dials anyway)
      return;
    }
    tune_link_socket(fd.get(), 15000);
    const uint64_t id = ++next_conn_;
    rdv::Preamble p;
    p.role = rdv::Role::kBroker;
    p.id = settings_.rendezvous;
    p.instances.push_back(settings_.instance);
    BeaconLeg leg = beacon_leg(beacon_ctx_, settings_.beacons.at(b), p, rdv::kBrokerAnswerWait);
    beacon_of_[id] = b;
    bridges_[id] = std::make_unique<TlsLink>(
        loop_, *this, id, std::move(fd),
        TlsLinkOptions{
            .context = ctx_, .server = true, .sni = "", .session = session_config(), .beacon = leg},
        Clock::now());
  }

  void on_link_paired(Link& l) noexcept override {
    auto it = beacon_of_.find(l.id());
    if (it == beacon_of_.end()) return;
    LOG_LINK(LOG_DEBUG, l.id(), "beacon %s paired a bridge",
             settings_.beacons.at(it->second).c_str());
    beacon_pool_.on_paired(it->second);
    stats_.beacon_paired(it->second);
    dial_beacons(Clock::now());  // refill the place at once
  }

  SessionConfig session_config() const {
    SessionConfig c;
    c.role = Role::kBroker;
    c.opener = true;
    c.instance = settings_.instance;
    c.status.replicas = settings_.replicas;
    c.pool = &g_budget;
    c.max_stream_window = limits::kMaxAutoStreamWindow;
    if (ctx_) c.pins = ctx_->pins();
    return c;
  }

  // ---------------------------------------------------------------- wrappers (BridgePool)
  Relay* wrapper(uint32_t w) const { return local_ ? relays_.find(local_.get(), w) : nullptr; }
  bool waiting(uint32_t w) override {
    Relay* r = wrapper(w);
    return r != nullptr && r->b.link == nullptr;
  }
  void attach(uint32_t w, TlsLink& bridge, uint32_t stream) override {
    relays_.attach(wrapper(w), &bridge, stream);
  }
  void reset(uint32_t w, Code code) override { relays_.reset(wrapper(w), code); }
  Bytes origin(uint32_t w) override {
    Relay* r = wrapper(w);
    return r != nullptr ? Bytes(r->origin) : Bytes();
  }

  // The bridge keeps the link (its first STATUS, or a version 1 HELLO): it
  // counts for readiness and takes streams from now on.
  void linked(Link& l) {
    linked_.insert(l.id());
    CertReport peer;
    if (peer_cert_report(static_cast<TlsLink&>(l).ssl(), static_cast<uint32_t>(l.id()), &peer))
      peer_certs_[l.id()] = peer;
    LOG_LINK(LOG_INFO, l.id(), "bridge connected: %s (protocol %u)",
             static_cast<TlsLink&>(l).peer_subject().c_str(), l.session().version());
    report_status();
    pool_.serve();
  }

  // The bridge said what state its OpenBao is in (its STATUS): logged when
  // it changed; a bridge back in service may take the held wrappers.
  void upstream_reported(Link& l) {
    const UpstreamState now = bridge_upstream(l);
    auto it = upstream_.try_emplace(l.id(), UpstreamState::kUnknown).first;
    if (it->second == now) return;
    LOG_LINK(LOG_INFO, l.id(), "bridge's OpenBao: %s -> %s",
             std::string(upstream_state_name(it->second)).c_str(),
             std::string(upstream_state_name(now)).c_str());
    it->second = now;
    send_stats();
    if (pool_.pending() != 0) pool_.serve();
  }

  // The bridge said which of our keys it accepts (PINS, §5b): logged, for
  // the reload check and /metrics.
  void peer_pins_reported(Link& l) {
    const auto& pins = *l.session().peer_pins();
    const std::optional<Pin> ours = leaf_pin(own_certs_);
    const bool current = ours && pins_contain(pins, *ours);
    // A link's first PINS holding our key is routine (every connect, every
    // duplicate probe): debug. A reload of the bridge's pins, or one that
    // leaves our key out, is worth a line.
    if (!current)
      LOG_LINK(LOG_WARN, l.id(), "the bridge pins %zu key(s), NOT our key in service", pins.size());
    else if (l.session().stats().pins_in > 1)
      LOG_LINK(LOG_INFO, l.id(), "the bridge pins %zu key(s), ours among them", pins.size());
    else
      LOG_LINK(LOG_DEBUG, l.id(), "the bridge pins %zu key(s), ours among them", pins.size());
    send_stats();
  }

  void report_status() {
    uint32_t up = 0;
    for (auto& [id, l] : bridges_)
      if (!l->closed() && linked_.count(id) != 0) up++;
    if (!report_links_up(up, [up] {
          return up == 0 ? std::string("no bridge connected")
                         : std::to_string(up) + " bridge(s) connected";
        }))
      return;
    send_stats();  // readiness follows the link at once, not a second later
  }

  // ---------------------------------------------------------------- link events
  void on_link_events(Link& l) noexcept override {
    auto events = l.session().take_events();
    const bool is_local = (&l == local_.get());
    bool no_slot = false;
    for (const Event& ev : events) {
      if (no_slot) break;
      switch (ev.kind) {
        case Event::kReady:
          if (!is_local) {
            // A link through a beacon holds no slot of the bridge port.
            if (beacon_of_.count(l.id()) == 0 && !admission_.on_established(l.id())) {
              no_slot = true;
              break;
            }
            if (bridge_linked(l)) linked(l);  // a version 1 bridge: at its HELLO
          }
          break;
        case Event::kOpened:
          if (is_local) {
            stats_.stream_opened();
            // The origin goes to the bridge as the forwarding process wrote it.
            relays_.create(&l, ev.stream)->origin.assign(ev.data.begin(), ev.data.end());
            pool_.place(ev.stream, Clock::now(),
                        std::chrono::milliseconds(settings_.pending_timeout_ms), draining_);
          }
          break;
        case Event::kReset:
          stats_.reset(ev.code);
          [[fallthrough]];
        case Event::kData:
        case Event::kFin:
        case Event::kWritable:
          relays_.dispatch(l, ev);
          break;
        case Event::kGoAway:
          // A duplicate (the bridge already holds a link to this broker) is
          // routine: every bridge probes every few seconds during a rollout.
          if (ev.code == Code::kDuplicateLink && linked_.count(l.id()) == 0) {
            LOG_LINK(LOG_DEBUG, l.id(), "bridge sent GOAWAY (DUPLICATE_LINK): closing");
            break;
          }
          LOG_LINK(LOG_INFO, l.id(), "bridge sent GOAWAY (%s): no new streams on it",
                   std::string(code_name(ev.code)).c_str());
          break;
        case Event::kStatus:
          if (is_local) break;
          if (linked_.count(l.id()) == 0) linked(l);  // the bridge keeps it
          upstream_reported(l);
          break;
        case Event::kPins:
          if (is_local) break;
          peer_pins_reported(l);
          break;
        case Event::kError:
          if (ev.code == Code::kNoError) {  // a clean close (a draining bridge's close_notify)
            if (is_local || linked_.count(l.id()) != 0)
              LOG_LINK(LOG_INFO, l.id(), "%s closed cleanly", is_local ? "data channel" : "link");
            break;
          }
          LOG_LINK(LOG_WARN, l.id(), "%s error %s: %s", is_local ? "data channel" : "link",
                   std::string(code_name(ev.code)).c_str(), std::string(ev.what).c_str());
          if (!is_local) stats_.link_error(ev.code);
          break;
      }
    }
    if (no_slot) {
      LOG_LINK_THROTTLED(refuse_log_, l.id(),
                         "authenticated bridge refused: all %zu link "
                         "slots are taken",
                         admission_.established());
      l.close("no link slot left for an authenticated bridge");
    }
  }

  void on_link_closed(Link& l) noexcept override {
    if (&l == local_.get()) {
      LOG_WARN("data channel to the forwarding process closed: %s", l.close_reason().c_str());
      relays_.link_closed(&l, Code::kCancel);
      pool_.clear();
      end_if_broken(*local_);
      loop_.retire(std::move(local_));
      return;
    }
    auto it = bridges_.find(l.id());
    if (it == bridges_.end()) return;
    auto* t = static_cast<TlsLink*>(&l);
    if (auto b = beacon_of_.find(l.id()); b != beacon_of_.end()) {
      // A waiting connection the beacon never paired: its place is refilled
      // after the backoff its failure calls for.
      if (!t->paired()) {
        const std::string& why = l.close_reason();
        const bool expensive = why.find("refused") != std::string::npos ||
                               why.find("certificate") != std::string::npos ||
                               why.find("TLS") != std::string::npos;
        if (!draining_)
          LOG_LINK_THROTTLED(beacon_log_, l.id(), "waiting connection to beacon %s ended: %s",
                             settings_.beacons.at(b->second).c_str(), why.c_str());
        beacon_pool_.on_lost(b->second, expensive, Clock::now());
        if (!draining_) stats_.beacon_lost(b->second);
      }
      beacon_of_.erase(b);
      if (!t->paired()) {
        relays_.link_closed(&l, Code::kCancel);
        loop_.retire(std::move(it->second));
        bridges_.erase(it);
        return;
      }
    } else {
      admission_.on_closed(l.id());
    }
    if (l.has_session()) stats_.link_closed(l.session().stats());
    // Evictions are the admission layer's (counted and logged there), not
    // the peer's failure.
    const bool evicted = l.close_reason().rfind("evicted", 0) == 0;
    if (!t->established() && !evicted) {
      stats_.handshake_failed(classify_handshake_failure(l.close_reason()));
      // Anyone on the internet can fail a handshake at will.
      LOG_LINK_THROTTLED(handshake_log_, l.id(), "bridge handshake failed: %s",
                         l.close_reason().c_str());
    } else if (t->established() && linked_.count(l.id()) != 0) {
      LOG_LINK(LOG_INFO, l.id(), "bridge disconnected: %s (%zu streams reset)",
               l.close_reason().c_str(), relays_.streams_on(l));
    } else if (t->established()) {
      LOG_LINK(LOG_DEBUG, l.id(), "bridge link closed before the bridge kept it: %s",
               l.close_reason().c_str());
    }
    linked_.erase(l.id());
    peer_certs_.erase(l.id());
    upstream_.erase(l.id());
    relays_.link_closed(&l, Code::kCancel);
    loop_.retire(std::move(it->second));
    bridges_.erase(it);
    report_status();
    update_listener(Clock::now());
  }

  // ---------------------------------------------------------------- time, drain
  // The links' deadlines are their own timers (Link::tick); this is the rest.
  void on_tick(TimePoint now) noexcept override {
    // The bridge port's absolute handshake deadline (the link's own is longer).
    for (Admission::Id id : admission_.expired(now))
      if (auto it = bridges_.find(id); it != bridges_.end())
        it->second->close("TLS handshake not completed within the deadline");
    update_listener(now);
    dial_beacons(now);
    pool_.expire(now);
    if (now >= next_stats_) {
      send_stats();
      next_stats_ = now + std::chrono::seconds(1);
    }
  }

  bool drained() noexcept override {
    if (relays_.size() != 0) return false;
    flush_all();
    return true;
  }

  TimePoint next_deadline() const override {
    TimePoint t = TimePoint::max();
    t = std::min(t, pool_.next_deadline());
    t = std::min(t, admission_.next_deadline());
    t = std::min(t, beacon_pool_.next_deadline());
    return std::min(t, next_stats_);
  }

  // Metric samples go to the parent (and on to the forwarding process, which
  // serves /metrics) once a second when anything changed.
  void send_stats() {
    BrokerStats::Live live;
    for (auto& [id, l] : bridges_) {
      if (!l->has_session()) continue;
      if (!l->closed() && linked_.count(id) != 0) {
        live.bridges_up++;
        live.by_upstream[static_cast<size_t>(bridge_upstream(*l))]++;
      }
      live.bytes_to_bridge += l->session().stats().bytes_out;
      live.bytes_from_bridge += l->session().stats().bytes_in;
    }
    live.streams_open = relays_.size();
    live.wrappers_pending = pool_.pending();
    for (size_t r = 0; r < kRefusalKinds; r++)
      live.admission[r] = admission_.refused(static_cast<Refusal>(r));
    live.log_dropped = log::dropped_lines();
    for (size_t b = 0; b < settings_.beacons.size(); b++)
      live.beacon_waiting.push_back(beacon_pool_.waiting(b));
    live.certs = own_certs_;
    for (const auto& [id, c] : peer_certs_)
      if (live.certs.certs.size() < kMaxCertReports) live.certs.certs.push_back(c);
    const std::optional<Pin> ours = leaf_pin(own_certs_);
    for (auto& [id, l] : bridges_)
      if (!l->closed() && l->has_session() && l->session().peer_pins() &&
          live.certs.peer_pins.size() < kMaxCertReports)
        live.certs.peer_pins.push_back(peer_pins_report(id, *l->session().peer_pins(), ours));
    for (const std::string& w : expiry_.due(live.certs, unix_now())) LOG_WARN("%s", w.c_str());
    if (auto body = stats_.changed_body(live)) send(Msg::kStats, *body);
  }

  void flush_all() noexcept {
    if (local_) local_->flush();
    for (auto& [id, l] : bridges_) l->flush();
  }

  void after_batch() noexcept override {
    if (pool_.pending() != 0) pool_.serve();
    flush_all();
    update_listener(Clock::now());
  }

  void on_drain() noexcept override {
    if (listener_.fd) {
      if (listener_.active) loop_.del(listener_.fd.get());
      listener_.active = false;
      listener_.fd.reset();
    }
    beacon_pool_.stop();
    std::vector<TlsLink*> waiting;
    for (auto& [id, l] : bridges_) {
      if (l->has_session()) l->session().go_away(Code::kShutdown);
      if (!l->paired()) waiting.push_back(l.get());
    }
    // Waiting beacon connections would only be paired to be refused.
    for (TlsLink* l : waiting) l->close("draining");
    LOG_INFO("draining: %zu streams open", relays_.size());
  }

  std::shared_ptr<TlsContext> ctx_;
  Listener listener_;
  std::map<uint64_t, std::unique_ptr<TlsLink>> bridges_;
  std::set<uint64_t> linked_;  // bridges_ whose bridge keeps the link (bridge_linked)
  std::map<uint64_t, UpstreamState> upstream_;  // what each linked bridge last said of OpenBao
  // For /metrics and the expiry warnings (shared/base/cert_report.h): the
  // material's certificates, and each linked bridge's leaf.
  CertState own_certs_;
  std::map<uint64_t, CertReport> peer_certs_;
  ExpiryWarnings expiry_;
  Admission admission_{bridge_admission()};
  UniqueFd spare_;
  // What a remote peer can make us log at will goes through these.
  log::Throttle refuse_log_, pause_log_, handshake_log_;
  RelayTable relays_;
  BrokerStats stats_;
  BridgePool<TlsLink> pool_{bridges_, *this, stats_};
  uint64_t next_conn_ = 0;
  TimePoint next_stats_{};
  // Beacon mode.
  std::shared_ptr<TlsContext> beacon_ctx_;
  std::mt19937_64 rng_;
  BeaconPool beacon_pool_;
  size_t dialing_beacon_ = 0;
  std::map<uint64_t, size_t> beacon_of_;  // bridges_ dialled to a beacon: which one
  log::Throttle beacon_log_;
};

}  // namespace

SandboxSpec tls_sandbox() {
  SandboxSpec s = child_sandbox(kProcs.tls, kSyscalls);
  // kBridgeHandshakes + kMaxBridgeLinks (192), the listener, the spare fd,
  // channels and the loop: the pools keep this process well under it.
  s.max_fds = 256;
  return s;
}

int tls_main() {
  return run_child<TlsProcess>();
}

}  // namespace ct::broker
