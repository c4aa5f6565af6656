// The bridge's TLS process: keeps one outbound mutual-TLS link to the broker
// (connections are dialled by the parent, which resolves names, and handed
// over as fds), and relays every stream the broker opens to a stream towards
// the forwarding process, which connects to OpenBao. After any link loss it
// asks for a new connection: soon after failures that cost the broker
// nothing, with exponential backoff after TLS and certificate failures
// (limits.h, kRedial*).
#include <arpa/inet.h>

#include <map>
#include <memory>
#include <random>

#include "bridge/bridge.h"
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

// Why a connection to the broker failed, and whether retrying soon is cheap
// for the broker (nothing reached its TLS process) or not (a handshake, or a
// configuration error that the next attempt repeats).
struct DialFailure {
  const char* cls;
  bool expensive;
};

DialFailure classify_dial_failure(const std::string& why) {
  if (why.find("refused") != std::string::npos) return {"refused", false};
  if (why.find("reset") != std::string::npos) return {"reset", false};
  if (why.find("unreachable") != std::string::npos || why.find("No route") != std::string::npos)
    return {"no route", false};
  if (why.find("timed out") != std::string::npos || why.find("no answer") != std::string::npos)
    return {"timeout", false};
  if (why.find("resolve") != std::string::npos) return {"lookup", false};
  return {"network", false};
}

DialFailure classify_link_failure(const std::string& why) {
  if (why.find("certificate") != std::string::npos || why.find("pin") != std::string::npos)
    return {"certificate", true};
  // The broker's end went away before the handshake did any work (it is
  // restarting): as cheap as a refused connection.
  if (why.find("reset by peer") != std::string::npos ||
      why.find("peer closed") != std::string::npos)
    return {"reset", false};
  return {"tls", true};
}

// Seccomp allowlist beyond the common set. The parent dials; this process
// only tunes and closes the sockets it is handed: no socket(), no connect().
const SyscallRule kSyscalls[] = {
    {"shutdown", "closing a link"},
};

class TlsProcess final : public ChildBase {
 public:
  TlsProcess() : ChildBase(kProcs, ProcRole::kTls, &g_budget), rng_(std::random_device{}()) {
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
        if (dial_ == DialState::kIdle) next_dial_ = Clock::now();  // first dial now
        if (dial_ == DialState::kIdle) dial_ = DialState::kWaiting;
        return true;
      }
      case Msg::kDialed: {
        if (dial_ != DialState::kDialing) return false;  // never asked for it
        dial_ = DialState::kIdle;
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
      case Msg::kDialFailed: {
        if (dial_ != DialState::kDialing) return false;
        const std::string why(m.body.begin(), m.body.end());
        dial_ = DialState::kIdle;
        retry_after(classify_dial_failure(why), "cannot reach the broker", why);
        return true;
      }
      default:
        return false;
    }
  }

  void on_drain() noexcept override {
    for (auto& [id, l] : links_)
      if (l->has_session()) l->session().go_away(Code::kShutdown);
    LOG_INFO("draining: %zu streams open", relays_.size());
  }

  // Schedules the next dial after a failure of class f.cls, and says so at
  // most once per interval per class (a broker that is down, or a peer that
  // fails every handshake, would otherwise write lines at will).
  void retry_after(DialFailure f, const char* what, const std::string& why) noexcept {
    if (draining_) return;
    using std::chrono::milliseconds;
    const auto ms = [](Duration d) -> long long {
      return std::chrono::duration_cast<milliseconds>(d).count();
    };
    long long delay = 0;
    if (f.expensive) {
      attempt_++;
      const auto cap =
          std::min<Duration>(limits::kRedialBackoffCap,
                             limits::kRedialBackoffBase * (1u << std::min(attempt_ - 1, 5u)));
      delay = std::max(ms(limits::kRedialMin),
                       std::uniform_int_distribution<long long>(0, ms(cap))(rng_));
    } else {
      delay = std::uniform_int_distribution<long long>(ms(limits::kRedialMin),
                                                       ms(limits::kRedialMax))(rng_);
    }
    next_dial_ = Clock::now() + milliseconds(delay);
    dial_ = DialState::kWaiting;
    log::Throttle& t = retry_log_[f.cls];
    LOG_WARN_THROTTLED(t, "%s (%s): %s; reconnecting in %lld ms (%s, attempt %u)", what, f.cls,
                       why.c_str(), delay, f.expensive ? "backing off" : "cheap to retry",
                       attempt_);
  }

  // A link that can take new streams: the newest one the broker has not sent GOAWAY on.
  bool have_usable_link() const {
    for (auto& [id, l] : links_)
      if (!l->closed() && !(l->has_session() && l->session().goaway_received())) return true;
    return false;
  }

  void report_status() {
    uint32_t up = 0;
    for (auto& [id, l] : links_)
      if (!l->closed() && l->has_session() && l->session().ready()) up++;
    if (up == reported_up_) return;
    reported_up_ = up;
    Status s{up, up == 0 ? "disconnected from broker " + settings_.peer_name
                         : "connected to broker " + settings_.peer_name};
    send(Msg::kStatus, encode_status(s));
  }

  void on_link_events(Link& l) noexcept override {
    auto events = l.session().take_events();
    const bool is_local = (&l == local_.get());
    for (const Event& ev : events) {
      switch (ev.kind) {
        case Event::kReady:
          if (!is_local) {
            up_since_[l.id()] = Clock::now();
            attempt_ = 0;  // a link completed its HELLO: the configuration works
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
                     "broker sent GOAWAY (%s): dialling a new link, this one finishes its %zu "
                     "streams",
                     std::string(code_name(ev.code)).c_str(), relays_.streams_on(l));
            if (dial_ == DialState::kIdle && !draining_) {
              next_dial_ = Clock::now();
              dial_ = DialState::kWaiting;
            }
          }
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
    // time. Failed handshakes are logged per class, throttled (retry_after).
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
    if (have_usable_link() || dial_ != DialState::kIdle) return;
    if (was_up)
      retry_after({"link lost", false}, "link to the broker lost", why);
    else
      retry_after(classify_link_failure(why),
                  ("conn=" + std::to_string(id) + " TLS with the broker failed").c_str(), why);
  }

  // The links' deadlines are their own timers (Link::tick); this is the rest.
  void on_tick(TimePoint now) noexcept override {
    relays_.expire(now);
    if (dial_ == DialState::kWaiting && now >= next_dial_ && ctx_ && !draining_) {
      if (have_usable_link()) {
        dial_ = DialState::kIdle;
      } else {
        dial_ = DialState::kDialing;
        send(Msg::kDialRequest, {});
      }
    }
  }

  TimePoint next_deadline() const override {
    TimePoint t = TimePoint::max();
    if (dial_ == DialState::kWaiting) t = std::min(t, next_dial_);
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

  bool drained() noexcept override {
    if (relays_.size() != 0) return false;
    flush_all();
    // close_notify after the GOAWAY: the broker sees a clean end, not a
    // transport failure.
    for (auto& [id, l] : links_)
      if (!l->closed()) l->shutdown_tls();
    return true;
  }

  enum class DialState { kIdle, kWaiting, kDialing };
  std::shared_ptr<TlsContext> ctx_;
  std::shared_ptr<TlsContext> service_ctx_;  // wrappers' TLS ends here when set
  std::map<uint64_t, std::unique_ptr<TlsLink>> links_;
  std::map<uint64_t, TimePoint> up_since_;
  RelayTable relays_;
  DialState dial_ = DialState::kIdle;
  TimePoint next_dial_ = TimePoint::max();
  unsigned attempt_ = 0;  // expensive failures since the last link that completed HELLO
  std::map<std::string, log::Throttle> retry_log_;  // one per failure class
  uint64_t next_conn_ = 0;
  uint32_t reported_up_ = UINT32_MAX;
  std::mt19937_64 rng_;
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
