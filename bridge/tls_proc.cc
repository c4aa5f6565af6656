// The bridge's TLS process: keeps one outbound mutual-TLS link to the broker
// (connections are dialled by the parent, which resolves names, and handed
// over as fds), and relays every stream the broker opens to a stream towards
// the forwarding process, which connects to OpenBao. After any link loss it
// asks for a new connection: soon after failures that cost the broker
// nothing, with exponential backoff after TLS and certificate failures
// (bridge/dial.h).
#include <arpa/inet.h>

#include <map>
#include <memory>
#include <random>

#include "bridge/bridge.h"
#include "bridge/dial.h"
#include "bridge/procs.h"
#include "shared/base/log.h"
#include "shared/os/net.h"
#include "shared/proc/child.h"
#include "shared/stream/relay.h"
#include "shared/tls/context.h"
#include "shared/tls/link.h"
#include "shared/tls/stream.h"
#include "shared/wire/limits.h"

namespace ct::bridge {

namespace {

// The process's --memory-budget for stream data (session.h CreditPool).
CreditPool g_budget{0};

// Seccomp allowlist beyond the common set. The parent dials; this process
// only tunes and closes the sockets it is handed: no socket(), no connect().
const SyscallRule kSyscalls[] = {
    {"shutdown", "closing a link"},
};

class TlsProcess final : public ChildBase {
 public:
  TlsProcess()
      : ChildBase(kProcs, ProcRole::kTls, &g_budget),
        rng_(std::random_device{}()),
        dial_([this](long long lo, long long hi) {
          return std::uniform_int_distribution<long long>(lo, hi)(rng_);
        }) {
    tls_global_init();
  }

 private:
  bool on_message(IpcMessage& m) noexcept override {
    switch (m.type) {
      case Msg::kSettings:
        relays_.set_timeouts(limits::kWrapperHandshakeTimeout,
                             std::chrono::milliseconds(settings_.stream_idle_timeout_ms));
        return true;
      case Msg::kMaterial: {
        auto mat = decode_material(m.body);
        if (!mat) return false;
        auto ctx = TlsContext::create(TlsContext::Side::kClient, *mat, settings_.peer_name);
        std::string err = ctx ? "" : ctx.what();
        std::unique_ptr<TlsContext> service;
        if (ctx && !mat->service_cert_pem.empty()) {
          auto made = TlsContext::create_service(mat->service_cert_pem, mat->service_key_pem);
          if (made)
            service = std::move(made).value();
          else
            err = "service certificate: " + made.what();
        }
        const bool terminate = !mat->service_cert_pem.empty();
        wipe_material(*mat);
        if (!ctx || (terminate && !service)) {
          send(Msg::kMaterialError, as_bytes(err));
          return true;
        }
        service_ctx_ = std::shared_ptr<TlsContext>(std::move(service));
        ctx_ = std::shared_ptr<TlsContext>(std::move(ctx).value());
        close_links_not_admitted(links_, *ctx_, "broker");
        // OpenSSL is initialised and a context built: confine before any network input.
        enter_sandbox(tls_sandbox());
        LOG_INFO("certificate material loaded, own pin %s, %zu broker pin(s), verifying name %s",
                 ctx_->own_pin().c_str(), ctx_->pins().size(), settings_.peer_name.c_str());
        send(Msg::kReady, {});
        dial_.dial_soon(Clock::now());  // the first dial
        return true;
      }
      case Msg::kDialed: {
        if (!dial_.on_dialed()) return false;  // never asked for it
        if (draining_) return true;
        tune_link_socket(m.fd.get(), 15000);
        const uint64_t id = ++next_conn_;
        SessionConfig c;
        c.role = Role::kBridge;
        c.opener = false;
        c.instance = random_instance();
        c.pool = &g_budget;
        const std::string& name = settings_.peer_name;
        unsigned char ip[16];
        const bool is_ip =
            inet_pton(AF_INET, name.c_str(), ip) == 1 || inet_pton(AF_INET6, name.c_str(), ip) == 1;
        links_[id] = std::make_unique<TlsLink>(
            loop_, *this, id, std::move(m.fd),
            TlsLinkOptions{
                .context = ctx_, .server = false, .sni = is_ip ? "" : name, .session = c},
            Clock::now());
        return true;
      }
      case Msg::kDialFailed:
        return dial_.on_dial_failed(std::string(m.body.begin(), m.body.end()), Clock::now());
      default:
        return false;
    }
  }

  void on_drain() noexcept override {
    dial_.drain();
    for (auto& [id, l] : links_)
      if (l->has_session()) l->session().go_away(Code::kShutdown);
    LOG_INFO("draining: %zu streams open", relays_.size());
  }

  // A link that can take new streams: the newest one the broker has not sent GOAWAY on.
  bool have_usable_link() const {
    for (auto& [id, l] : links_)
      if (!l->closed() && !(l->has_session() && l->session().goaway_received())) return true;
    return false;
  }

  void report_status() {
    const uint32_t up = links_up(links_);
    report_links_up(up, [&] {
      return (up == 0 ? "disconnected from broker " : "connected to broker ") + settings_.peer_name;
    });
  }

  void on_link_events(Link& l) noexcept override {
    auto events = l.session().take_events();
    const bool is_local = (&l == local_.get());
    for (const Event& ev : events) {
      switch (ev.kind) {
        case Event::kReady:
          if (!is_local) {
            up_since_[l.id()] = Clock::now();
            dial_.on_link_up();  // a link completed its HELLO: the configuration works
            LOG_LINK(LOG_INFO, l.id(), "connected to the broker: %s",
                     static_cast<TlsLink&>(l).peer_subject().c_str());
            report_status();
          }
          break;
        case Event::kOpened: {
          if (is_local) break;  // the forwarding process never opens
          if (!local_ || local_->closed() || draining_) {
            l.session().reset(ev.stream, draining_ ? Code::kRefused : Code::kResource);
            break;
          }
          const uint32_t lid = local_->session().open();
          if (lid == 0) {
            l.session().reset(ev.stream, Code::kResource);
            break;
          }
          Relay* r = relays_.create(&l, ev.stream);
          // With --service-cert the wrapper's TLS ends here; the forwarding
          // process (and OpenBao on loopback) sees plaintext, the broker never.
          if (service_ctx_)
            r->codec = std::make_unique<TlsStreamServer>(service_ctx_, service_ctx_->get());
          relays_.start_timers(r, Clock::now());
          relays_.attach(r, local_.get(), lid);
          break;
        }
        case Event::kData:
        case Event::kFin:
        case Event::kReset:
        case Event::kWritable:
          relays_.dispatch(l, ev);
          break;
        case Event::kGoAway:
          if (!is_local) {
            LOG_LINK(LOG_INFO, l.id(),
                     "broker sent GOAWAY (%s): dialling a new link, this one finishes "
                     "its %zu streams",
                     std::string(code_name(ev.code)).c_str(), relays_.streams_on(l));
            dial_.dial_soon(Clock::now());
          }
          break;
        case Event::kStatus:
          break;
        case Event::kError:
          LOG_LINK(LOG_WARN, l.id(), "%s error %s: %s", is_local ? "data channel" : "link",
                   std::string(code_name(ev.code)).c_str(), std::string(ev.what).c_str());
          break;
      }
    }
  }

  void on_link_closed(Link& l) noexcept override {
    if (&l == local_.get()) {
      LOG_WARN("data channel to the forwarding process closed: %s", l.close_reason().c_str());
      relays_.link_closed(&l, Code::kCancel);
      end_if_broken(*local_);
      loop_.retire(std::move(local_));
      return;
    }
    auto it = links_.find(l.id());
    if (it == links_.end()) return;
    auto up = up_since_.find(l.id());
    const bool was_up = up != up_since_.end();
    // A link that was up ends at most once per completed HELLO: logged every
    // time. Failed handshakes are logged per class, throttled (Redialer).
    if (was_up) {
      LOG_LINK(LOG_WARN, l.id(), "link to the broker lost: %s (%zu streams reset)",
               l.close_reason().c_str(), relays_.streams_on(l));
      up_since_.erase(up);
    }
    const std::string why = l.close_reason();
    const uint64_t id = l.id();
    relays_.link_closed(&l, Code::kCancel);
    loop_.retire(std::move(it->second));
    links_.erase(it);
    report_status();
    dial_.on_link_closed(id, was_up, why, have_usable_link(), Clock::now());
  }

  // The links' deadlines are their own timers (Link::tick); this is the rest.
  void on_tick(TimePoint now) noexcept override {
    relays_.expire(now);
    if (ctx_ && dial_.due(now, have_usable_link())) send(Msg::kDialRequest, {});
  }

  bool drained() noexcept override {
    if (relays_.size() != 0) return false;
    flush_all();
    // close_notify after the GOAWAY: the broker sees a clean end, not a
    // transport failure.
    for (auto& [id, l] : links_)
      if (!l->closed()) l->shutdown_tls();
    return true;
  }

  TimePoint next_deadline() const override {
    TimePoint t = TimePoint::max();
    t = std::min(t, dial_.next_deadline());
    return std::min(t, relays_.next_deadline());
  }

  void flush_all() noexcept {
    if (local_) local_->flush();
    for (auto& [id, l] : links_) l->flush();
  }
  void after_batch() noexcept override {
    flush_all();  // first: a link retired below must not lose its last frames (a FIN)
    // close() ends in on_link_closed(), which erases the link from links_
    // (and retires it, so the pointers stay valid until the batch ends): walk
    // a copy, never the map itself.
    std::vector<TlsLink*> links;
    for (auto& [id, l] : links_) links.push_back(l.get());
    // Retire a link the broker sent GOAWAY on once its streams are done.
    for (TlsLink* l : links)
      if (!l->closed() && l->has_session() && l->session().goaway_received() &&
          relays_.streams_on(*l) == 0)
        l->close("broker asked us to go away and no stream is left");
  }

  std::shared_ptr<TlsContext> ctx_;
  std::shared_ptr<TlsContext> service_ctx_;  // wrappers' TLS ends here when set
  std::map<uint64_t, std::unique_ptr<TlsLink>> links_;
  std::map<uint64_t, TimePoint> up_since_;
  RelayTable relays_;
  std::mt19937_64 rng_;  // the redial jitter (declared before dial_, which draws from it)
  Redialer dial_;
  uint64_t next_conn_ = 0;
};

}  // namespace

SandboxSpec tls_sandbox() {
  SandboxSpec s = child_sandbox(kProcs.tls, kSyscalls);
  s.max_fds = 64;  // a link or two to the broker, the data channel, the control channel
  return s;
}

int tls_main() {
  return run_child<TlsProcess>();
}

}  // namespace ct::bridge
