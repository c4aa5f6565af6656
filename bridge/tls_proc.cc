// The bridge's TLS process: keeps an outbound mutual-TLS link to each broker
// replica (one per distinct broker instance, found by dialling the one
// address until every replica the brokers announce is linked)
// (connections are dialled by the parent, which resolves names, and handed
// over as fds), and relays every stream the broker opens to a stream towards
// the forwarding process, which connects to OpenBao. After any link loss it
// asks for a new connection: soon after failures that cost the broker
// nothing, with exponential backoff after TLS and certificate failures
// (bridge/dial.h). It also polls OpenBao's health endpoint through the
// forwarding process (bridge/vault_health.h) and tells every kept link the
// state it found (STATUS, docs/protocol.md §5a).
#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <string>

#include "bridge/bridge.h"
#include "bridge/dial.h"
#include "bridge/procs.h"
#include "bridge/vault_health.h"
#include "shared/base/log.h"
#include "shared/os/net.h"
#include "shared/proc/child.h"
#include "shared/stream/relay.h"
#include "shared/tls/context.h"
#include "shared/tls/link.h"
#include "shared/tls/stream.h"
#include "shared/wire/limits.h"
#include "shared/wire/origin.h"
#include "shared/wire/pin_rollover.h"

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
        health_ = HealthPoller(std::chrono::milliseconds(settings_.vault_health_interval_ms),
                               kHealthProbeTimeout);
        relays_.set_inner_opener([this](Relay& r) { return open_local_for(r); });
        return true;
      case Msg::kMaterial: {
        auto mat = decode_material(m.body);
        if (!mat) return false;
        auto ctx = TlsContext::create(TlsContext::Side::kClient, *mat, settings_.peer_name);
        std::string err = ctx ? "" : ctx.what();
        CertState certs = ctx ? material_certs(*mat) : CertState{};
        std::unique_ptr<TlsContext> service;
        if (ctx && !mat->service_cert_pem.empty()) {
          auto made = TlsContext::create_service(mat->service_cert_pem, mat->service_key_pem);
          if (made)
            service = std::move(made).value();
          else
            err = "service certificate: " + made.what();
        }
        std::unique_ptr<TlsContext> upstream;
        if (err.empty() && !mat->upstream_ca_pem.empty()) {
          auto made = TlsContext::create_upstream(mat->upstream_ca_pem);
          if (made)
            upstream = std::move(made).value();
          else
            err = "--vault-ca: " + made.what();
        }
        // Fail closed: an https:// OpenBao is probed verified or not at all
        // (the parent never sends one without the other).
        if (err.empty() && !settings_.vault_tls_name.empty() && !upstream)
          err = "an https:// --vault-addr is probed only with --vault-ca";
        std::unique_ptr<TlsContext> beacon;
        if (err.empty() && !settings_.beacons.empty()) {
          auto made = TlsContext::create_beacon(*mat);
          if (made)
            beacon = std::move(made).value();
          else
            err = "beacon CA: " + made.what();
        }
        wipe_material(*mat);
        if (err.empty()) err = key_rollover_refusal(links_, own_certs_, certs, "broker");
        if (!err.empty()) {
          send(Msg::kMaterialError, as_bytes(err));
          return true;
        }
        // A probe in flight keeps the context it began with (TlsStream's keep).
        upstream_ctx_ = std::shared_ptr<TlsContext>(std::move(upstream));
        service_ctx_ = std::shared_ptr<TlsContext>(std::move(service));
        beacon_ctx_ = std::shared_ptr<TlsContext>(std::move(beacon));
        ctx_ = std::shared_ptr<TlsContext>(std::move(ctx).value());
        own_certs_ = std::move(certs);
        close_links_not_admitted(links_, *ctx_, "broker");
        // Version 4 brokers learn our broker pins as they are now (§5b).
        for (auto& [id, l] : links_)
          if (l->has_session()) l->session().set_pins(ctx_->pins());
        // OpenSSL is initialised and a context built: confine before any network input.
        enter_sandbox(tls_sandbox());
        LOG_INFO("certificate material loaded, own pin %s, %zu broker pin(s), verifying name %s",
                 ctx_->own_pin().c_str(), ctx_->pins().size(), settings_.peer_name.c_str());
        send(Msg::kReady, {});
        report();                       // the status file's certificates
        dial_.dial_soon(Clock::now());  // the first dial
        // Sandboxed now: OpenBao's answers are network input too. A reload
        // does not restart the polling.
        if (!health_started_ && !draining_) {
          health_started_ = true;
          health_.start(Clock::now());
        }
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
        c.status_at_ready = false;  // sent once the link is kept (identified())
        c.pool = &g_budget;
        c.max_stream_window = limits::kMaxAutoStreamWindow;
        c.pins = ctx_->pins();
        const std::string& name = settings_.peer_name;
        TlsLinkOptions opt{.context = ctx_,
                           .server = false,
                           .sni = is_ip_literal(name) ? "" : name,
                           .session = c,
                           .beacon = std::nullopt};
        if (!settings_.beacons.empty()) opt.beacon = beacon_leg();
        links_[id] = std::make_unique<TlsLink>(loop_, *this, id, std::move(m.fd), std::move(opt),
                                               Clock::now());
        return true;
      }
      case Msg::kDialFailed:
        next_beacon();
        return dial_.on_dial_failed(std::string(m.body.begin(), m.body.end()), Clock::now());
      default:
        return false;
    }
  }

  // A dialled connection whose fd we could not take (out of fds): a failed
  // dial, retried with backoff; the links we have and their streams go on.
  bool on_fd_lost(const IpcMessage& m) noexcept override {
    if (m.type != Msg::kDialed) return false;
    next_beacon();
    return dial_.on_dial_failed(
        "the TLS process is out of file descriptors to take the dialled connection", Clock::now());
  }

  void on_drain() noexcept override {
    dial_.drain();
    health_.stop();
    abandon_probe();  // ours going away says nothing about OpenBao
    for (auto& [id, l] : links_)
      if (l->has_session()) l->session().go_away(Code::kShutdown);
    LOG_INFO("draining: %zu streams open", relays_.size());
  }

  // ---------------------------------------------------------------- beacon mode
  // The outer session of a link dialled to settings_.beacons[beacon_at_]:
  // the preamble names the instances already held, so the beacon pairs this
  // connection with another replica (docs/beacon.md §2).
  BeaconLeg beacon_leg() const {
    rdv::Preamble p;
    p.role = rdv::Role::kBridge;
    p.id = settings_.rendezvous;
    for (const auto& inst : instances()) {
      if (p.instances.size() == rdv::kMaxInstances) break;
      p.instances.push_back(inst);
    }
    return ct::beacon_leg(beacon_ctx_, settings_.beacons.at(beacon_at_), p, rdv::kBridgeAnswerWait);
  }
  // After a failure at a beacon (no connection, no TLS, refused, not paired
  // in time): the next one in the order; after a pairing: the first again.
  void next_beacon() {
    if (!settings_.beacons.empty()) beacon_at_ = (beacon_at_ + 1) % settings_.beacons.size();
  }
  void on_link_paired(Link& l) noexcept override {
    LOG_LINK(LOG_DEBUG, l.id(), "paired by beacon %s", settings_.beacons.at(beacon_at_).c_str());
    beacon_at_ = 0;
  }

  // ---------------------------------------------------------------- replicas
  // A link that takes new streams and counts towards the replicas: HELLO
  // done, the broker's first STATUS here (version 2; a version 1 broker is
  // counted at its HELLO), no GOAWAY either way (a draining broker, or a
  // duplicate we are closing, does not count).
  bool counted(TlsLink& l) const {
    return !l.closed() && l.has_session() && l.session().ready() &&
           !l.session().goaway_received() && !l.session().goaway_sent() &&
           identified_.count(l.id()) != 0;
  }
  // How many replicas the brokers say they run: the largest any counted link
  // says (a rollout that changes the number briefly has both), 1 for a
  // version 1 broker or one that says 0; 0 with no counted link.
  uint16_t replicas_expected() const {
    uint16_t n = 0;
    for (auto& [id, l] : links_) {
      if (!counted(*l)) continue;
      const auto& st = l->session().peer_status();
      n = std::max<uint16_t>(n, st && st->replicas > 0 ? st->replicas : 1);
    }
    return n;
  }
  std::set<std::array<uint8_t, 16>> instances() const {
    std::set<std::array<uint8_t, 16>> out;
    for (auto& [id, l] : links_)
      if (counted(*l)) out.insert(l->session().peer_hello().instance);
    return out;
  }
  // No more links wanted: one to every replica the brokers say they run,
  // and to the one a rolling update adds (kSurgeReplicas).
  bool satisfied() const {
    const size_t n = instances().size();
    return n > 0 && n >= replicas_expected() + limits::kSurgeReplicas;
  }
  // A link that has not yet said which instance it reached.
  bool handshaking() const {
    for (auto& [id, l] : links_)
      if (!l->closed() && identified_.count(id) == 0) return true;
    return false;
  }
  // While nothing is in flight: hunt (fast) for a missing replica, or, with
  // every replica linked, look (slowly) for a rollout's surge replica. With
  // no link at all the failure paths (Redialer backoff) own the next dial.
  void plan_hunt(bool after_duplicate = false) {
    if (!ctx_ || draining_ || handshaking() || satisfied()) return;
    const size_t n = instances().size();
    if (n == 0) return;
    if (n < replicas_expected()) {
      if (after_duplicate)
        dial_.on_duplicate(Clock::now());
      else
        dial_.hunt(Clock::now());
    } else {
      dial_.sync(Clock::now());
    }
  }

  // The link told us which broker instance it reached (HELLO and STATUS).
  void identified(TlsLink& l) {
    identified_.insert(l.id());
    const auto& inst = l.session().peer_hello().instance;
    for (auto& [id, m] : links_) {
      if (m.get() == &l || !counted(*m) || m->session().peer_hello().instance != inst) continue;
      // Keep the older link (it may carry streams); the new one says why it
      // goes (GOAWAY DUPLICATE_LINK: info at the broker, not an error) and
      // closes once the streams the broker opened meanwhile are done.
      LOG_LINK(LOG_DEBUG, l.id(), "reached broker instance %s again (held on conn=%llu): closing",
               instance_name(inst).c_str(), static_cast<unsigned long long>(id));
      duplicates_.insert(l.id());
      l.session().go_away(Code::kDuplicateLink);
      plan_hunt(/*after_duplicate=*/true);
      return;
    }
    // Kept: now the broker may count it (its first STATUS from us, §5a).
    l.session().set_status(own_status_);
    CertReport peer;
    if (peer_cert_report(l.ssl(), static_cast<uint32_t>(l.id()), &peer)) peer_certs_[l.id()] = peer;
    dial_.on_new_instance();
    LOG_LINK(LOG_INFO, l.id(),
             "connected to the broker: %s (protocol %u); linked to broker instance %s: %zu "
             "linked, the brokers run %u",
             l.peer_subject().c_str(), l.session().version(), instance_name(inst).c_str(),
             instances().size(), replicas_expected());
    report();
    plan_hunt();
  }

  // ---------------------------------------------------------------- OpenBao's health
  // A probe is a stream on the data channel like a wrapper's, opened here
  // rather than by the broker: the forwarding process connects to OpenBao
  // for it as for any stream, and this process reads the answer's status
  // line (bridge/vault_health.h). With an https:// --vault-addr the probe's
  // TLS client runs here too, on memory BIOs (TlsStream), verified against
  // --vault-ca and the host name of --vault-addr: the forwarding process
  // carries its ciphertext like any other stream's, and stays OpenSSL-free.
  void start_probe(TimePoint now) {
    const std::string req = health_request(settings_.vault_health_path, settings_.upstream);
    // No data channel yet (at start), or its HELLO not done: shortly again.
    const uint32_t id =
        (local_ && !local_->closed() && local_->session().ready()) ? local_->session().open() : 0;
    if (id == 0 && health_.defer(now)) return;
    health_.begin(now);
    if (id != 0 && probe_tls()) {
      if (!upstream_ctx_) {  // never: kMaterial refuses it; fail closed all the same
        local_->session().reset(id, Code::kCancel);
        return apply(health_.end(now));
      }
      probe_stream_ = id;
      probe_tls_ = std::make_unique<TlsStream>(upstream_ctx_, upstream_ctx_->get(),
                                               settings_.vault_tls_name);
      probe_request_ = req;
      probe_cipher_in_ = 0;
      return pump_probe();
    }
    if (id == 0 || local_->session().send_capacity(id) < req.size()) {
      if (id != 0) local_->session().reset(id, Code::kCancel);
      return apply(health_.end(now));  // no way to OpenBao for a while: unreachable
    }
    probe_stream_ = id;
    local_->session().send(id, as_bytes(req), false);
  }

  // The probe's stream ended, or must: its answer (or its absence) decides.
  void end_probe(bool reset) {
    if (probe_stream_ == 0) return;
    forget_probe_stream(reset);
    apply(health_.end(Clock::now()));
  }

  // The probe ends for a reason of ours (a drain, the data channel lost): no verdict.
  void abandon_probe() {
    if (probe_stream_ == 0) return;
    forget_probe_stream(/*reset=*/true);
    health_.abandon(Clock::now());
  }

  // Lets go of the probe's stream (and its TLS), resetting it first if asked
  // and still open.
  void forget_probe_stream(bool reset) {
    if (reset && local_ && !local_->closed() && local_->session().stream_exists(probe_stream_))
      local_->session().reset(probe_stream_, Code::kCancel);
    probe_stream_ = 0;
    probe_tls_.reset();
    probe_request_.clear();
  }

  bool probe_tls() const { return !settings_.vault_tls_name.empty(); }

  // A TLS probe that failed says why (wrong CA, wrong name, no TLS at all),
  // at most a line per interval like every failure OpenBao's side can cause;
  // its state (unreachable) is logged on the change as for any probe.
  void probe_failed(const std::string& why) {
    LOG_WARN_THROTTLED(probe_log_, "OpenBao health probe to %s (verifying %s): %s",
                       settings_.upstream.c_str(), settings_.vault_tls_name.c_str(), why.c_str());
    end_probe(/*reset=*/true);
  }

  // Moves the probe's TLS along: the answer's plaintext into the poller, the
  // request once the handshake is done (and verified), ciphertext out within
  // the stream's credit (the rest on kWritable).
  void pump_probe() {
    TlsStream& t = *probe_tls_;
    std::array<uint8_t, 1024> buf;
    for (;;) {
      const size_t n = t.take_inner(buf);
      if (n == 0) break;
      apply(health_.feed(Bytes(buf.data(), n)));
      if (health_.over_cap()) return end_probe(/*reset=*/true);
    }
    if (!t.failed() && t.established() && !probe_request_.empty()) {
      t.put_inner(as_bytes(probe_request_));
      probe_request_.clear();
    }
    if (t.failed()) return probe_failed(t.error());
    const Bytes out = t.outer_pending();
    const size_t n = std::min(out.size(), local_->session().send_capacity(probe_stream_));
    if (n == 0) return;
    local_->session().send(probe_stream_, out.first(n), false);
    t.outer_sent(n);
  }

  // The probe stream's events (true: it was one of them).
  bool probe_event(const Event& ev) {
    if (probe_stream_ == 0 || ev.stream != probe_stream_) return false;
    switch (ev.kind) {
      case Event::kData:
        local_->session().consume(ev.stream, ev.data.size());  // read, and dropped
        if (probe_tls_) {
          probe_cipher_in_ += ev.data.size();
          if (probe_cipher_in_ > kMaxHealthTlsAnswer) {
            probe_failed("more than " + std::to_string(kMaxHealthTlsAnswer) +
                         " bytes of TLS from OpenBao");
            break;
          }
          probe_tls_->put_outer(ev.data);
          pump_probe();
          break;
        }
        apply(health_.feed(ev.data));
        if (health_.over_cap()) end_probe(/*reset=*/true);
        break;
      case Event::kWritable:
        if (probe_tls_) pump_probe();
        break;
      case Event::kFin:  // OpenBao closed (Connection: close): close ours, done
        local_->session().close_write(ev.stream);
        if (probe_tls_ && !probe_tls_->established()) {
          probe_failed("OpenBao closed the connection during the TLS handshake");
          break;
        }
        end_probe(/*reset=*/false);
        break;
      case Event::kReset:  // the forwarding process could not connect, or OpenBao reset
        forget_probe_stream(/*reset=*/false);
        apply(health_.end(Clock::now()));
        break;
      default:
        break;
    }
    return true;
  }

  void apply(const std::optional<HealthChange>& c) {
    if (!c) return;
    LOG_INFO("OpenBao at %s: %s -> %s", settings_.upstream.c_str(),
             std::string(upstream_state_name(c->from)).c_str(),
             std::string(upstream_state_name(c->to)).c_str());
    own_status_.upstream = c->to;
    // Every kept link hears it; a link kept later gets it in its first STATUS.
    for (auto& [id, l] : links_)
      if (!l->closed() && l->has_session() && identified_.count(id) != 0 &&
          duplicates_.count(id) == 0)
        l->session().set_status(own_status_);
    report();
  }

  void report() {
    Status s;
    s.upstream = static_cast<uint8_t>(own_status_.upstream);
    // Links up: kept ones, a draining broker's included; not a duplicate
    // being closed, nor one that has not said which broker it reached.
    for (auto& [id, l] : links_)
      if (!l->closed() && l->has_session() && l->session().ready() && identified_.count(id) != 0 &&
          duplicates_.count(id) == 0)
        s.links_up++;
    s.replicas_expected = replicas_expected();
    s.certs = cert_state();
    warn_expiry(s.certs);
    for (const auto& i : instances()) s.instances.push_back(instance_name(i));
    const size_t linked = s.instances.size();
    const unsigned expected = s.replicas_expected;
    report_status(std::move(s), [&] {
      // systemctl status shows it: the link and what the brokers hear of OpenBao.
      const std::string vault =
          health_.enabled()
              ? std::string("; OpenBao ") + std::string(upstream_state_name(own_status_.upstream))
              : std::string();
      if (linked == 0) return "disconnected from broker " + settings_.peer_name + vault;
      return "connected to broker " + settings_.peer_name + ": " + std::to_string(linked) +
             " instance(s) linked, the brokers run " + std::to_string(expected) + vault;
    });
  }

  // The wrapper's stream opens on the data channel once its TLS handshake is
  // done (RelayTable's inner opener), with the origin the broker sent and the
  // name the wrapper asked for.
  Relay::End open_local_for(Relay& r) {
    if (!local_ || local_->closed()) return {};
    Origin origin = decode_origin(r.origin, nullptr).value_or(Origin{});
    const std::string sni = r.codec ? r.codec->server_name() : std::string();
    if (valid_authority(sni)) origin.authority = sni;
    const uint32_t lid = local_->session().open(encode_origin(origin));
    if (lid == 0) return {};
    return {local_.get(), lid};
  }

  // A broker's OPEN with a malformed origin costs only that stream (the
  // session reset it, §3a); say so, throttled: it is the broker's bug.
  void note_bad_origins(Link& l) {
    const uint64_t n = l.session().stats().bad_origins;
    uint64_t& seen = bad_origins_[l.id()];
    if (n == seen) return;
    seen = n;
    LOG_LINK_THROTTLED(bad_origin_log_, l.id(),
                       "stream=%u reset: the broker sent a malformed origin (%s); %llu so far",
                       l.session().last_bad_origin_stream(),
                       std::string(l.session().last_bad_origin_why()).c_str(),
                       static_cast<unsigned long long>(n));
  }

  void on_link_events(Link& l) noexcept override {
    auto events = l.session().take_events();
    const bool is_local = (&l == local_.get());
    if (!is_local) note_bad_origins(l);
    for (const Event& ev : events) {
      if (is_local && probe_event(ev)) continue;
      switch (ev.kind) {
        case Event::kReady:
          if (!is_local) {
            up_since_[l.id()] = Clock::now();
            dial_.on_link_up();  // a link completed its HELLO: the configuration works
            // Debug: with every replica linked, a sync dial every 2-4 s
            // (plan_hunt) gets here and mostly turns out a duplicate. The
            // info line is identified()'s, for a link that is kept.
            LOG_LINK(LOG_DEBUG, l.id(), "handshake done with the broker: %s (protocol %u)",
                     static_cast<TlsLink&>(l).peer_subject().c_str(), l.session().version());
            if (settings_.proxy_protocol && l.session().version() < kOriginVersion)
              LOG_LINK(LOG_WARN, l.id(),
                       "the broker speaks protocol %u, too old to say who connected: no PROXY "
                       "header can carry a wrapper's address, so OpenBao gets the LOCAL "
                       "command (the bridge's own address) for this link's streams",
                       l.session().version());
            // A version 1 broker sends no STATUS: it is identified now.
            if (l.session().version() < 2) identified(static_cast<TlsLink&>(l));
            report();
          }
          break;
        case Event::kOpened: {
          if (is_local) break;  // the forwarding process never opens
          // A restarted forwarding process whose HELLO is not in yet: with
          // --proxy-protocol the stream would lose its origin (local_ready),
          // so it is refused rather than attributed to the bridge.
          if (!local_ || local_->closed() || draining_ ||
              (settings_.proxy_protocol && !local_ready())) {
            l.session().reset(ev.stream, draining_ ? Code::kRefused : Code::kResource);
            break;
          }
          // The origin (docs/protocol.md §3a) goes on to the forwarding
          // process, without an AUTHORITY: only our own TLS process can know
          // which name the wrapper asked for.
          Origin origin = decode_origin(ev.data, nullptr).value_or(Origin{});
          origin.authority.clear();
          if (service_ctx_) {
            // With --service-cert the wrapper's TLS ends here; the forwarding
            // process (and OpenBao on loopback) sees plaintext, the broker
            // never. Its stream opens once the handshake is done, with the
            // name the wrapper asked for (open_local_for).
            Relay* r = relays_.create(&l, ev.stream);
            r->codec = std::make_unique<TlsStream>(service_ctx_, service_ctx_->get());
            r->origin = encode_origin(origin);
            r->inner_pending = true;
            relays_.start_timers(r, Clock::now());
            break;
          }
          const uint32_t lid = local_->session().open(encode_origin(origin));
          if (lid == 0) {
            l.session().reset(ev.stream, Code::kResource);
            break;
          }
          Relay* r = relays_.create(&l, ev.stream);
          r->origin = encode_origin(origin);  // for the stream's log lines (its uid)
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
        case Event::kPins:
          if (is_local) break;
          peer_pins_reported(l);
          break;
        case Event::kStatus:
          if (is_local) break;
          if (identified_.count(l.id()) == 0) {
            identified(static_cast<TlsLink&>(l));
          } else {  // the replica count changed
            report();
            plan_hunt();
          }
          break;
        case Event::kError:
          if (ev.code == Code::kNoError) {  // a clean close: a stop, a drain
            LOG_LINK(LOG_INFO, l.id(), "%s closed cleanly", is_local ? "data channel" : "link");
            break;
          }
          LOG_LINK(LOG_WARN, l.id(), "%s error %s: %s", is_local ? "data channel" : "link",
                   std::string(code_name(ev.code)).c_str(), std::string(ev.what).c_str());
          break;
      }
    }
  }

  void on_link_closed(Link& l) noexcept override {
    if (&l == local_.get()) {
      LOG_WARN("data channel to the forwarding process closed: %s", l.close_reason().c_str());
      abandon_probe();  // gone with the channel: the next probe, on the next channel, decides
      relays_.link_closed(&l, Code::kCancel);
      end_if_broken(*local_);
      loop_.retire(std::move(local_));
      return;
    }
    auto it = links_.find(l.id());
    if (it == links_.end()) return;
    auto up = up_since_.find(l.id());
    const bool was_up = up != up_since_.end();
    const bool duplicate = duplicates_.erase(l.id()) != 0;
    // Closed after a GOAWAY either way: the broker drained, or we did.
    const bool clean = l.has_session() && (l.session().goaway_received() || draining_);
    identified_.erase(l.id());
    peer_certs_.erase(l.id());
    bad_origins_.erase(l.id());
    // A link that was up ends at most once per completed HELLO: logged every
    // time (a drain or a duplicate at info). Failed handshakes are logged per
    // class, throttled (Redialer).
    if (was_up) {
      if (duplicate)
        LOG_LINK(LOG_DEBUG, l.id(), "duplicate link closed");
      else if (clean)
        LOG_LINK(LOG_INFO, l.id(), "link to broker instance %s ended after GOAWAY: %s",
                 instance_name(l.session().peer_hello().instance).c_str(),
                 l.close_reason().c_str());
      else
        LOG_LINK(LOG_WARN, l.id(), "link to the broker lost: %s (%zu streams reset)",
                 l.close_reason().c_str(), relays_.streams_on(l));
      up_since_.erase(up);
    }
    const std::string why = l.close_reason();
    const uint64_t id = l.id();
    // Beacon mode: a connection the beacon never paired says the next dial
    // goes to the next beacon in the order.
    if (!static_cast<TlsLink&>(l).paired()) next_beacon();
    relays_.link_closed(&l, Code::kCancel);
    loop_.retire(std::move(it->second));
    links_.erase(it);
    report();
    // A drained or duplicate link ending is no failure: the hunt (or the
    // GOAWAY's dial) already has the next dial in hand.
    if (duplicate || (was_up && clean))
      plan_hunt();
    else
      dial_.on_link_closed(id, was_up, why, satisfied(), Clock::now());
  }

  // The links' deadlines are their own timers (Link::tick); this is the rest.
  void on_tick(TimePoint now) noexcept override {
    relays_.expire(now);
    if (now >= next_expiry_check_) {  // time passes without any reload or link change
      next_expiry_check_ = now + std::chrono::minutes(1);
      warn_expiry(cert_state());
    }
    if (health_.expired(now)) {  // no answer in time: unreachable
      if (probe_tls_ && !probe_tls_->established())
        probe_failed("no TLS handshake within " +
                     std::to_string(std::chrono::seconds(kHealthProbeTimeout).count()) + " s");
      else
        end_probe(/*reset=*/true);
    }
    if (health_.due(now) && !draining_) start_probe(now);
    if (ctx_ && local_ready() && dial_.due(now, satisfied())) {
      if (settings_.beacons.empty()) {
        send(Msg::kDialRequest, {});
      } else {
        const uint8_t at = static_cast<uint8_t>(beacon_at_);
        send(Msg::kDialRequest, Bytes(&at, 1));
      }
    }
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

  // The data channel to the forwarding process has done its HELLO. A stream
  // opened on it before then goes without its origin (Session::open sends one
  // only to a peer known to speak version 3), and with --proxy-protocol
  // OpenBao would get a LOCAL header, the bridge's own address, for a
  // wrapper's connection (seen when the forwarding process started 40 ms
  // after the link was up). So no link is dialled before it is ready.
  bool local_ready() const { return local_ && !local_->closed() && local_->session().ready(); }

  TimePoint next_deadline() const override {
    TimePoint t = TimePoint::max();
    if (local_ready()) t = std::min(t, dial_.next_deadline());
    t = std::min(t, health_.next_deadline());
    t = std::min(t, next_expiry_check_);
    return std::min(t, relays_.next_deadline());
  }

  // The broker said which of our keys it accepts (PINS, §5b): logged, for
  // the reload check and the status file.
  void peer_pins_reported(Link& l) {
    const auto& pins = *l.session().peer_pins();
    const std::optional<Pin> ours = leaf_pin(own_certs_);
    const bool current = ours && pins_contain(pins, *ours);
    // A link's first PINS holding our key is routine (every connect, every
    // duplicate probe): debug. A reload of the broker's pins, or one that
    // leaves our key out, is worth a line.
    if (!current)
      LOG_LINK(LOG_WARN, l.id(), "the broker pins %zu key(s), NOT our key in service", pins.size());
    else if (l.session().stats().pins_in > 1)
      LOG_LINK(LOG_INFO, l.id(), "the broker pins %zu key(s), ours among them", pins.size());
    else
      LOG_LINK(LOG_DEBUG, l.id(), "the broker pins %zu key(s), ours among them", pins.size());
    report();
  }

  // Ours and the kept links' brokers' (shared/base/cert_report.h).
  CertState cert_state() const {
    CertState s = own_certs_;
    for (const auto& [id, c] : peer_certs_)
      if (s.certs.size() < kMaxCertReports) s.certs.push_back(c);
    const std::optional<Pin> ours = leaf_pin(own_certs_);
    // Kept links only, as links_up counts them: a sync dial's duplicate
    // (every 2-4 s) would otherwise change the state twice, each a STATUS
    // line in the parent's log and an sd_notify.
    for (const auto& [id, l] : links_)
      if (!l->closed() && l->has_session() && l->session().peer_pins() &&
          identified_.count(id) != 0 && duplicates_.count(id) == 0 &&
          s.peer_pins.size() < kMaxCertReports)
        s.peer_pins.push_back(peer_pins_report(id, *l->session().peer_pins(), ours));
    return s;
  }
  void warn_expiry(const CertState& s) {
    for (const std::string& w : expiry_.due(s, unix_now())) LOG_WARN("%s", w.c_str());
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
    // ...and a duplicate once the streams the broker opened on it are done:
    // GOAWAY went out; close_notify tells the broker it is a clean end.
    for (TlsLink* l : links)
      if (!l->closed() && duplicates_.count(l->id()) != 0 && relays_.streams_on(*l) == 0) {
        l->flush();
        l->shutdown_tls();
        l->close("duplicate link to a broker instance already linked");
      }
    plan_hunt();
  }

  std::shared_ptr<TlsContext> ctx_;
  std::shared_ptr<TlsContext> service_ctx_;  // wrappers' TLS ends here when set
  std::map<uint64_t, std::unique_ptr<TlsLink>> links_;
  std::map<uint64_t, TimePoint> up_since_;
  std::set<uint64_t> identified_;             // links whose broker instance is known
  std::set<uint64_t> duplicates_;             // links closing: their instance was already held
  LinkStatus own_status_;                     // what we tell every kept link
  HealthPoller health_;                       // OpenBao's state (own_status_.upstream)
  std::map<uint64_t, uint64_t> bad_origins_;  // per link: malformed origins logged
  log::Throttle bad_origin_log_;
  bool health_started_ = false;  // polling began (after the first material)
  uint32_t probe_stream_ = 0;    // the probe's stream on the data channel; 0: none
  // https:// --vault-addr: the probe's TLS client (--vault-ca), its request
  // until the handshake is done, and the ciphertext read so far.
  std::shared_ptr<TlsContext> upstream_ctx_;
  std::unique_ptr<TlsStream> probe_tls_;
  std::string probe_request_;
  size_t probe_cipher_in_ = 0;
  log::Throttle probe_log_;
  RelayTable relays_;
  std::shared_ptr<TlsContext> beacon_ctx_;  // beacon mode: the outer sessions'
  size_t beacon_at_ = 0;                    // beacon mode: the next dial's beacon
  std::mt19937_64 rng_;  // the redial jitter (declared before dial_, which draws from it)
  Redialer dial_;
  uint64_t next_conn_ = 0;

  // The status file's certificates and the expiry warnings
  // (shared/base/cert_report.h): the material's, and each identified_ link's
  // broker leaf; checked again every minute, as time passes.
  CertState own_certs_;
  std::map<uint64_t, CertReport> peer_certs_;
  ExpiryWarnings expiry_;
  TimePoint next_expiry_check_{};
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
