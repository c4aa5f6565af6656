// The beacon's TLS process (docs/beacon.md): accepts brokers and bridges on
// --listen, runs the outer TLS 1.3 session (ALPN cloudtaser-beacon/1), reads
// each connection's preamble, pairs connections through the sans-IO
// PairingTable (beacon/pairing.h) and relays each pair's decrypted bytes to
// the other side unchanged. Those bytes are the inner link's TLS records:
// this process holds no key of it and never parses them.
//
// A connection's life (Conn::State):
//   handshake -> preamble -> waiting -> paired -> closing
//          \           \          \________________/
//           \           \__________________________ closing (with an answer)
//            \_________________________________________ closed
// - handshake: the admission pool's absolute deadline (10 s from accept).
// - preamble: read exactly what rdv::PreambleReader wants, so not a byte of
//   what follows is taken from the outer session; 5 s.
// - waiting: in the table; any byte it sends is an error ("spoke before
//   PAIRED"); brokers get KEEPALIVE, bridges NO_PEER at the pairing timeout.
// - paired: A's plaintext is written into B's outer session while B's
//   unsent ciphertext is under kRelayBuffer; past it A is not read until B
//   drains, so a slow side slows only its own pair. One side's end (close_notify,
//   EOF or an error) ends the other with close_notify.
// - closing: close_notify (after an answer, if any) is flushed and what the
//   client still sends is dropped until its EOF, then the fd is closed;
//   kClosingLinger at most.
#include <fcntl.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <memory>
#include <optional>

#include "beacon/beacon.h"
#include "beacon/metrics.h"
#include "beacon/options.h"
#include "beacon/pairing.h"
#include "beacon/procs.h"
#include "shared/base/check.h"
#include "shared/base/log.h"
#include "shared/os/admission.h"
#include "shared/os/net.h"
#include "shared/proc/child.h"
#include "shared/tls/beacon_server.h"
#include "shared/tls/conn.h"
#include "shared/tls/context.h"
#include "shared/wire/limits.h"
#include "shared/wire/rendezvous.h"

namespace ct::beacon {

namespace {

using namespace std::chrono_literals;

// docs/beacon.md §3.
constexpr size_t kRelayBuffer = 256 * 1024;  // per direction of a pair
constexpr auto kHandshakeDeadline = 10s;     // from accept, absolute
constexpr auto kPreambleDeadline = 5s;       // from the end of the handshake
// A closing connection's last bytes (an answer, close_notify) get this long
// to leave and the client this long to close its side; then the fd is closed.
constexpr auto kClosingLinger = 5s;
// Outer TLS handshakes in flight: a few thousand brokers and bridges
// redialling at once fit; a flood of silent sockets cycles through by
// eviction (shared/os/admission.h) and holds each slot at most 10 s.
constexpr size_t kHandshakes = 512;
constexpr size_t kHandshakesPerSource = 64;
constexpr auto kHandshakeMinAge = 1s;
// Connections past their handshake (waiting and paired): 4096 waiting and
// the pairs made from as many again.
constexpr size_t kMaxConns = 12288;
// What one wake-up reads from one socket (and one pump relays): bounds the
// work one busy pair can cause before others get their turn.
constexpr size_t kReadChunk = limits::kReadChunk;
constexpr size_t kRelayChunk = 64 * 1024;
// TCP_USER_TIMEOUT on every connection: unacknowledged data for this long
// ends it (a side that vanished without FIN or RST).
constexpr unsigned kUserTimeoutMs = 30000;

// Unused (the data channel to the forwarding process carries no stream),
// but every child has one.
CreditPool g_budget{0};

// Seccomp allowlist beyond the common set (shared/os/sandbox.cc). No socket(),
// no connect(), no open(): this process only uses the listener it was handed.
const SyscallRule kSyscalls[] = {
    {"accept4", "broker and bridge connections on the listener the parent bound"},
};

AdmissionLimits admission_limits(const Options& o) {
  AdmissionLimits l;
  l.handshakes = kHandshakes;
  l.handshakes_per_source = std::min<size_t>(kHandshakesPerSource, o.per_source);
  l.handshake_deadline = kHandshakeDeadline;
  l.min_age = kHandshakeMinAge;
  l.established = kMaxConns;
  l.established_per_source = o.per_source;
  return l;
}

class TlsProcess final : public ChildBase {
 public:
  TlsProcess() : ChildBase(kProcs, ProcRole::kTls, &g_budget) {
    tls_global_init();
    spare_.reset(fcntl(ctl_.fd(), F_DUPFD_CLOEXEC, 0));
    relay_buf_.resize(kRelayChunk);
  }

 private:
  enum class State { kHandshake, kPreamble, kWaiting, kPaired, kClosing };

  struct Conn final : Loop::Handler {
    Conn(TlsProcess* s, ConnId i, const SourceKey& from, UniqueFd fd,
         std::shared_ptr<BeaconServerContext> c)
        : self(s),
          id(i),
          src(from),
          ctx(std::move(c)),
          tls(std::make_unique<TlsConn>(ctx->get(), std::move(fd), true, "")),
          timer(s->loop_.timers(), [this](TimePoint now) { self->on_timer(*this, now); }) {}
    void on_io(uint32_t events) noexcept override { self->on_conn_io(*this, events); }

    TlsProcess* self;
    ConnId id;
    SourceKey src;
    std::shared_ptr<BeaconServerContext> ctx;  // its SSL_CTX, across reloads
    std::unique_ptr<TlsConn> tls;
    Timer timer;  // the preamble deadline; the closing linger
    State state = State::kHandshake;
    rdv::PreambleReader reader;
    rdv::Role role = rdv::Role::kBridge;
    ConnId peer = 0;      // paired: the other side
    bool reading = true;  // paired: false while the peer's buffer is full
    uint32_t interest = EPOLLIN;
  };

  struct Listener : Loop::Handler {
    TlsProcess* self = nullptr;
    UniqueFd fd;
    bool active = false;
    void on_io(uint32_t) noexcept override { self->accept_all(); }
  };

  // ---------------------------------------------------------------- control
  bool on_message(IpcMessage& m) noexcept override {
    switch (m.type) {
      case Msg::kSettings:
        return true;
      case Msg::kMaterial: {
        auto mat = decode_material(m.body);
        if (!mat) return false;
        auto ctx = BeaconServerContext::create(*mat);
        if (ctx) stats_.certs = material_certs(*mat);
        wipe_material(*mat);
        if (!ctx) {
          send(Msg::kMaterialError, as_bytes(ctx.what()));
          return true;
        }
        // New handshakes use the new context; connections keep theirs.
        ctx_ = std::shared_ptr<BeaconServerContext>(std::move(ctx).value());
        // OpenSSL is initialised and a context built: from here on no file,
        // no new socket.
        enter_sandbox(tls_sandbox());
        LOG_INFO("certificate material loaded, own pin %s, %s", ctx_->own_pin().c_str(),
                 ctx_->client_auth() ? "client certificate required" : "no client certificate");
        send(Msg::kReady, {});
        update_listener(Clock::now());
        send_stats();
        return true;
      }
      case Msg::kListener: {
        auto o = decode_options(m.body);
        if (!o) return false;
        opts_ = *o;
        table_ = PairingTable(opts_.pairing());
        admission_ = Admission(admission_limits(opts_));
        listener_.self = this;
        listener_.fd = std::move(m.fd);
        LOG_INFO(
            "pairing timeout %u ms, keepalive every %u ms, at most %u waiting per id and "
            "role, %u in all, %u connections per source",
            opts_.pairing_timeout_ms, opts_.keepalive_ms, opts_.waiting_per_id, opts_.waiting_total,
            opts_.per_source);
        update_listener(Clock::now());
        send_stats();  // readiness follows at once, not a second later
        return true;
      }
      default:
        return false;
    }
  }

  // The data channel to the forwarding process carries nothing here.
  void on_link_events(Link& l) noexcept override { (void)l.session().take_events(); }
  void on_link_closed(Link& l) noexcept override {
    if (&l != local_.get()) return;
    log::msg(channel_end_level(l), "data channel to the forwarding process closed: %s",
             l.close_reason().c_str());
    if (end_if_broken(*local_)) return;
    loop_.retire(std::move(local_));
  }

  // ---------------------------------------------------------------- accept
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
                         "listener paused: %zu handshakes in flight, none old enough to evict",
                         admission_.handshakes());
    }
  }

  void accept_all() noexcept {
    for (int i = 0; i < 64 && listener_.active; i++) {
      const TimePoint now = Clock::now();
      if (!admission_.accepting(now)) break;
      sockaddr_storage peer{};
      bool shed = false;
      UniqueFd fd = accept_peer(listener_.fd.get(), &peer, &spare_, ctl_.fd(), &shed);
      if (!fd) {
        if (shed) {
          refuse_count(Refused::kFdLimit, "?", "out of file descriptors");
          continue;
        }
        if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED)
          LOG_WARN_ERRNO(errno, "accept on the listener");
        break;
      }
      auto src = source_key(peer);
      if (!src) continue;
      const ConnId id = ++next_id_;
      const auto d = admission_.on_accept(id, *src, now);
      if (d.evict != 0) {
        if (Conn* old = find(d.evict)) {
          refuse_count(Refused::kEvicted, old->src.str(), "oldest handshake evicted");
          close_now(*old);
        }
      }
      if (!d.admit) {
        refuse_count(d.why == Refusal::kPerSource ? Refused::kPerSource : Refused::kNoSlot,
                     src->str(), refusal_name(d.why));
        continue;  // closes it
      }
      stats_.accepted++;
      tune_link_socket(fd.get(), kUserTimeoutMs);
      auto c = std::make_unique<Conn>(this, id, *src, std::move(fd), ctx_);
      loop_.add(c->tls->fd(), EPOLLIN, c.get());
      conns_[id] = std::move(c);
      LOG_LINK(LOG_DEBUG, id, "accepted from %s", src->str().c_str());
    }
    update_listener(Clock::now());
  }

  // ---------------------------------------------------------------- one connection
  Conn* find(ConnId id) {
    auto it = conns_.find(id);
    return it == conns_.end() ? nullptr : it->second.get();
  }

  // Counted always; logged at most once per 10 s (anyone can cause these).
  void refuse_count(Refused r, const std::string& who, const std::string& why) {
    stats_.refused[static_cast<size_t>(r)]++;
    LOG_WARN_THROTTLED(refuse_log_, "connection from %s refused (%s): %s", who.c_str(),
                       refused_name(r), why.c_str());
  }

  void on_conn_io(Conn& c, uint32_t events) noexcept {
    c.tls->allow_read(kReadChunk);
    if ((events & EPOLLOUT) != 0 || c.state == State::kClosing) c.tls->flush();
    switch (c.state) {
      case State::kHandshake:
        return step_handshake(c);
      case State::kPreamble:
        return read_preamble(c);
      case State::kWaiting:
        return probe_waiting(c);
      case State::kPaired:
        if ((events & (EPOLLHUP | EPOLLERR)) != 0 && (events & EPOLLIN) == 0)
          return end_pair(c, "connection reset");
        if ((events & EPOLLIN) != 0 || c.reading) pump(c);
        // Its buffer drained: the peer may be read again.
        if (Conn* p = find(c.peer); p != nullptr && !p->reading) pump(*p);
        return;
      case State::kClosing:
        return linger(c, events);
    }
  }

  // A closing connection: its last bytes leave, and what the client still
  // sends is read and dropped until its EOF. Closing a socket with unread
  // input would make the kernel send a reset, which may discard the answer
  // and close_notify the client has not read yet.
  void linger(Conn& c, uint32_t events) {
    for (int i = 0; i < 16; i++)
      if (c.tls->read_plain(std::span<uint8_t>(relay_buf_.data(), relay_buf_.size())) == 0) break;
    if (c.tls->failed() || (events & (EPOLLHUP | EPOLLERR)) != 0 ||
        (c.tls->pending_cipher() == 0 && c.tls->eof()))
      return close_now(c);
    update_interest(c);
  }

  void step_handshake(Conn& c) {
    if (!c.tls->handshake()) {
      if (c.tls->failed()) {
        c.tls->flush();  // the alert, if any
        refuse_count(Refused::kHandshake, c.src.str(), c.tls->error());
        return close_now(c);
      }
      c.tls->flush();
      return update_interest(c);
    }
    if (!beacon_alpn_agreed(*c.tls)) {
      refuse_count(Refused::kNoAlpn, c.src.str(), "no ALPN cloudtaser-beacon/1");
      return close_now(c);
    }
    if (!admission_.on_established(c.id)) {
      refuse_count(Refused::kNoSlot, c.src.str(), "no connection slot left");
      return finish(c, rdv::Answer::kOverCapacity,
                    "too many connections at this beacon from this address or in all");
    }
    c.state = State::kPreamble;
    c.timer.arm(Clock::now() + kPreambleDeadline);
    LOG_LINK(LOG_DEBUG, c.id, "outer TLS established");
    read_preamble(c);
  }

  void read_preamble(Conn& c) {
    uint8_t buf[rdv::kMaxPreamble];
    for (int i = 0; i < 4 && c.reader.state() == rdv::PreambleReader::State::kMore; i++) {
      // Exactly what the reader wants: what follows stays in the session.
      const size_t n = c.tls->read_plain(std::span<uint8_t>(buf, c.reader.wanted()));
      if (n == 0) break;
      c.reader.feed(Bytes(buf, n));
    }
    switch (c.reader.state()) {
      case rdv::PreambleReader::State::kBad:
        refuse_count(Refused::kBadPreamble, c.src.str(), c.reader.error());
        return finish(c, rdv::Answer::kBadPreamble, c.reader.error());
      case rdv::PreambleReader::State::kDone:
        return on_preamble(c);
      case rdv::PreambleReader::State::kMore:
        if (c.tls->eof() || c.tls->failed()) {
          stats_.refused[static_cast<size_t>(Refused::kGone)]++;
          return close_now(c);
        }
        c.tls->flush();
        return update_interest(c);
    }
  }

  void on_preamble(Conn& c) {
    c.timer.cancel();
    const rdv::Preamble& p = c.reader.preamble();
    c.role = p.role;
    const auto a = table_.add(c.id, p, Clock::now(), c.src.str());
    switch (a.outcome) {
      case PairingTable::Outcome::kPaired:
        if (Conn* other = find(a.peer)) return pair(c, *other);
        // The table names only connections that exist (close_now removes).
        CT_CHECK(false);
        return;
      case PairingTable::Outcome::kWaiting:
        c.state = State::kWaiting;
        LOG_LINK(LOG_DEBUG, c.id, "%s waiting", rdv::role_name(c.role));
        return probe_waiting(c);
      case PairingTable::Outcome::kRefused:
        refuse_count(Refused::kOverCapacity, c.src.str(), a.reason);
        return finish(c, a.refusal, a.reason);
    }
  }

  // A waiting connection must be silent: a byte is an error, EOF its end.
  void probe_waiting(Conn& c) {
    uint8_t b = 0;
    if (c.tls->read_plain(std::span<uint8_t>(&b, 1)) != 0) {
      table_.remove(c.id);
      refuse_count(Refused::kSpokeEarly, c.src.str(), "spoke before PAIRED");
      return finish(c, rdv::Answer::kBadPreamble, "spoke before PAIRED");
    }
    if (c.tls->eof() || c.tls->failed()) {
      table_.remove(c.id);
      stats_.refused[static_cast<size_t>(Refused::kGone)]++;
      return close_now(c);
    }
    c.tls->flush();
    update_interest(c);
  }

  void answer(Conn& c, rdv::Answer a, std::string_view reason = {}) {
    if (c.tls->write_plain(rdv::encode_answer(a, reason))) stats_.answers[static_cast<size_t>(a)]++;
    c.tls->flush();
  }

  void pair(Conn& c, Conn& o) {
    c.peer = o.id;
    o.peer = c.id;
    c.state = o.state = State::kPaired;
    c.reading = o.reading = true;
    stats_.pairs_total++;
    stats_.pairs_active++;
    answer(o, rdv::Answer::kPaired);
    answer(c, rdv::Answer::kPaired);
    LOG_LINK(LOG_DEBUG, c.id, "%s paired with conn=%llu", rdv::role_name(c.role),
             static_cast<unsigned long long>(o.id));
    pump(o);
    if (Conn* again = find(c.id); again != nullptr && again->state == State::kPaired) pump(c);
  }

  // Relays what `a` sent to its peer while the peer's unsent ciphertext is
  // under kRelayBuffer.
  void pump(Conn& a) {
    Conn* bp = find(a.peer);
    if (bp == nullptr) return;
    Conn& b = *bp;
    a.tls->allow_read(kReadChunk);
    uint64_t& counter = a.role == rdv::Role::kBroker ? stats_.bytes_broker_to_bridge
                                                     : stats_.bytes_bridge_to_broker;
    for (int i = 0; i < 64; i++) {
      // Paused only right after a flush that left the buffer full: b then
      // waits for EPOLLOUT, whose flush resumes a (on_conn_io). Pausing on a
      // buffer the same call could still drain would leave a stopped for good.
      b.tls->flush();
      const size_t pending = b.tls->pending_cipher();
      if (pending >= kRelayBuffer) {
        a.reading = false;
        break;
      }
      a.reading = true;
      const size_t room = std::min(relay_buf_.size(), kRelayBuffer - pending);
      const size_t n = a.tls->read_plain(std::span<uint8_t>(relay_buf_.data(), room));
      if (n == 0) break;
      if (!b.tls->write_plain(Bytes(relay_buf_.data(), n))) break;
      counter += n;
    }
    if (a.reading) b.tls->flush();
    if (a.tls->failed()) return end_pair(a, a.tls->error());
    if (b.tls->failed()) return end_pair(b, b.tls->error());
    if (a.tls->eof())
      return end_pair(a, a.tls->closed_cleanly() ? "close_notify" : "EOF without close_notify");
    update_interest(a);
    update_interest(b);
  }

  // `a` ended (or failed): the other side gets the rest of what `a` sent,
  // then close_notify, so the inner session sees the end.
  void end_pair(Conn& a, const std::string& why) {
    Conn* b = find(a.peer);
    stats_.pairs_active--;
    LOG_LINK(LOG_DEBUG, a.id, "%s ended its pair with conn=%llu: %s", rdv::role_name(a.role),
             static_cast<unsigned long long>(a.peer), why.c_str());
    a.peer = 0;
    if (b != nullptr) {
      b->peer = 0;
      finish(*b, std::nullopt, {});
    }
    finish(a, std::nullopt, {});
  }

  // Ends a connection past its handshake: an answer (if any), close_notify,
  // and the fd closed once they are sent (or at kClosingLinger).
  void finish(Conn& c, std::optional<rdv::Answer> a, std::string_view reason) {
    if (c.state == State::kWaiting) table_.remove(c.id);
    if (a) answer(c, *a, reason);
    c.tls->shutdown();
    c.state = State::kClosing;
    c.timer.arm(Clock::now() + kClosingLinger);
    linger(c, 0);
  }

  void close_now(Conn& c) {
    if (c.state == State::kWaiting) table_.remove(c.id);
    if (c.state == State::kPaired && c.peer != 0) {
      // Not reached through end_pair: end the pair first.
      return end_pair(c, "closed");
    }
    admission_.on_closed(c.id);
    c.timer.cancel();
    loop_.del(c.tls->fd());
    auto it = conns_.find(c.id);
    loop_.retire(std::move(it->second));  // the fd closes with it, after this batch
    conns_.erase(it);
    update_listener(Clock::now());
  }

  void update_interest(Conn& c) {
    uint32_t want = 0;
    switch (c.state) {
      case State::kHandshake:
      case State::kPreamble:
      case State::kWaiting:
        want = EPOLLIN;
        break;
      case State::kPaired:
        want = c.reading ? EPOLLIN : 0u;
        break;
      case State::kClosing:
        want = c.tls->eof() ? 0u : EPOLLIN;  // a socket at EOF stays readable
        break;
    }
    if (c.tls->pending_cipher() != 0) want |= EPOLLOUT;
    if (want == c.interest) return;
    c.interest = want;
    loop_.mod(c.tls->fd(), want, &c);
  }

  void on_timer(Conn& c, TimePoint) {
    if (c.state == State::kPreamble) {
      refuse_count(Refused::kPreambleTimeout, c.src.str(), "preamble not complete within 5 s");
      return finish(c, rdv::Answer::kBadPreamble, "preamble not complete within 5 s");
    }
    if (c.state == State::kClosing) close_now(c);
  }

  // ---------------------------------------------------------------- time, drain
  void on_tick(TimePoint now) noexcept override {
    for (Admission::Id id : admission_.expired(now))
      if (Conn* c = find(id)) {
        refuse_count(Refused::kHandshakeTimeout, c->src.str(),
                     "TLS handshake not completed within 10 s");
        close_now(*c);
      }
    const auto due = table_.tick(now);
    for (ConnId id : due.timed_out)
      if (Conn* c = find(id)) {
        refuse_count(Refused::kNoPeer, c->src.str(), "no broker of its id in time");
        finish(*c, rdv::Answer::kNoPeer,
               "no broker of this id waiting within " +
                   std::to_string(opts_.pairing_timeout_ms / 1000) + " s");
      }
    for (ConnId id : due.keepalive)
      if (Conn* c = find(id)) {
        answer(*c, rdv::Answer::kKeepalive);
        update_interest(*c);
      }
    update_listener(now);
    if (now >= next_stats_) {
      send_stats();
      next_stats_ = now + 1s;
    }
  }

  TimePoint next_deadline() const override {
    return std::min({table_.next_deadline(), admission_.next_deadline(), next_stats_});
  }

  void send_stats() {
    Stats s = stats_;
    s.listening = ctx_ && listener_.fd && !draining_ ? 1 : 0;
    s.waiting_brokers = table_.waiting_brokers();
    s.waiting_bridges = table_.waiting_bridges();
    s.log_dropped = log::dropped_lines();
    for (const std::string& w : expiry_.due(s.certs, unix_now())) LOG_WARN("%s", w.c_str());
    if (sent_ && s == *sent_) return;
    send(Msg::kStats, encode_stats(s));
    sent_ = s;
  }

  void on_drain() noexcept override {
    if (listener_.fd) {
      if (listener_.active) loop_.del(listener_.fd.get());
      listener_.active = false;
      listener_.fd.reset();
    }
    std::vector<ConnId> ids;
    for (auto& [id, c] : conns_) ids.push_back(id);
    size_t pairs = 0;
    for (ConnId id : ids) {
      Conn* c = find(id);
      if (c == nullptr) continue;
      switch (c->state) {
        case State::kHandshake:
          close_now(*c);
          break;
        case State::kPreamble:
        case State::kWaiting:
          stats_.refused[static_cast<size_t>(Refused::kShutdown)]++;
          finish(*c, rdv::Answer::kShutdown, "beacon shutting down");
          break;
        case State::kPaired:
          pairs++;
          break;
        case State::kClosing:
          break;
      }
    }
    LOG_INFO("draining: %zu pair(s) relaying", pairs / 2);
    send_stats();
  }

  bool drained() noexcept override { return conns_.empty(); }

  std::shared_ptr<BeaconServerContext> ctx_;
  Options opts_;
  PairingTable table_;
  Admission admission_{admission_limits(Options{})};
  Listener listener_;
  std::map<ConnId, std::unique_ptr<Conn>> conns_;
  ConnId next_id_ = 0;
  UniqueFd spare_;
  std::vector<uint8_t> relay_buf_;
  Stats stats_;
  ExpiryWarnings expiry_;
  std::optional<Stats> sent_;
  TimePoint next_stats_{};
  log::Throttle refuse_log_, pause_log_;
};

}  // namespace

SandboxSpec tls_sandbox() {
  SandboxSpec s = child_sandbox(kProcs.tls, kSyscalls);
  // Every handshake and connection slot, the listener, the spare fd, the
  // channels and the loop.
  s.max_fds = kHandshakes + kMaxConns + 64;
  return s;
}

int tls_main() {
  return run_child<TlsProcess>();
}

}  // namespace ct::beacon
