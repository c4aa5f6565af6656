// The beacon's forwarding process: serves /metrics, /healthz and /readyz on
// --metrics-listen from the figures the TLS process sends (STATS, through the
// parent). It holds no key and never maps OpenSSL, so the HTTP parser of a
// port anyone may reach is not where the beacon's key lives
// (docs/beacon.md §4). Minimal HTTP/1.x as the broker's: one GET per
// connection, the head capped at 4 KiB and due 2 s after accept, then the
// answer and close; admission pools as every listening port's
// (shared/os/admission.h).
#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>
#include <list>
#include <memory>

#include "beacon/beacon.h"
#include "beacon/metrics.h"
#include "beacon/procs.h"
#include "shared/base/log.h"
#include "shared/os/admission.h"
#include "shared/os/net.h"
#include "shared/proc/child.h"
#include "shared/wire/limits.h"

namespace ct::beacon {

namespace {

CreditPool g_budget{0};

const SyscallRule kSyscalls[] = {
    {"accept4", "/metrics, /healthz and /readyz connections"},
};

constexpr size_t kMaxHead = 4096;

AdmissionLimits http_admission() {
  AdmissionLimits l;
  l.handshakes = limits::kHttpHeads;
  l.handshakes_per_source = limits::kHttpHeadsPerSource;
  l.handshake_deadline = limits::kHttpHeadDeadline;
  l.min_age = limits::kHttpHeadMinAge;
  l.established = limits::kHttpAnswers;
  return l;
}

class ForwardProcess final : public ChildBase {
 public:
  ForwardProcess() : ChildBase(kProcs, ProcRole::kForward, &g_budget) {
    spare_.reset(fcntl(ctl_.fd(), F_DUPFD_CLOEXEC, 0));
  }

 private:
  struct Conn : Loop::Handler {
    ForwardProcess* self = nullptr;
    Admission::Id id = 0;
    UniqueFd fd;
    std::string in, out;
    size_t out_pos = 0;
    TimePoint deadline;  // the whole exchange; the head's own is the admission's
    bool done = false;
    void on_io(uint32_t events) noexcept override { self->on_conn_io(*this, events); }
  };
  struct Listener : Loop::Handler {
    ForwardProcess* self = nullptr;
    UniqueFd fd;
    bool active = false;
    void on_io(uint32_t) noexcept override { self->accept_all(); }
  };

  bool on_message(IpcMessage& m) noexcept override {
    switch (m.type) {
      case Msg::kSettings:
        enter_sandbox(forward_sandbox(0));
        send(Msg::kReady, {});
        return true;
      case Msg::kMetricsListener:
        listener_.self = this;
        listener_.fd = std::move(m.fd);
        update_listener(Clock::now());
        return true;
      case Msg::kStats: {
        auto s = decode_stats(m.body);
        if (!s) return false;
        tls_ = *s;
        have_stats_ = true;
        return true;
      }
      default:
        return false;
    }
  }

  // The data channel carries nothing in the beacon.
  void on_link_events(Link& l) noexcept override { (void)l.session().take_events(); }
  void on_link_closed(Link& l) noexcept override {
    if (&l != local_.get()) return;
    if (end_if_broken(*local_)) return;
    loop_.retire(std::move(local_));
  }

  void update_listener(TimePoint now) noexcept {
    const bool want = listener_.fd && admission_.accepting(now);
    if (want == listener_.active) return;
    listener_.active = want;
    if (want) {
      loop_.add(listener_.fd.get(), EPOLLIN, &listener_);
    } else if (listener_.fd) {
      loop_.del(listener_.fd.get());
      admission_.count(Refusal::kPaused);
    }
  }

  void accept_all() noexcept {
    for (int i = 0; i < 16 && listener_.active; i++) {
      const TimePoint now = Clock::now();
      if (!admission_.accepting(now)) break;
      sockaddr_storage peer{};
      bool shed = false;
      UniqueFd fd = accept_peer(listener_.fd.get(), &peer, &spare_, ctl_.fd(), &shed);
      if (!fd) {
        if (!shed) break;
        admission_.count(Refusal::kFdLimit);
        continue;
      }
      auto src = source_key(peer);
      if (!src) continue;
      const Admission::Id id = ++next_id_;
      const auto d = admission_.on_accept(id, *src, now);
      if (d.evict != 0)
        for (auto& c : conns_)
          if (c->id == d.evict) drop(*c);
      if (!d.admit) {
        LOG_WARN_THROTTLED(refuse_log_, "metrics connection from %s refused: %s",
                           src->str().c_str(), refusal_name(d.why));
        continue;
      }
      auto c = std::make_unique<Conn>();
      c->self = this;
      c->id = id;
      c->fd = std::move(fd);
      c->deadline = now + limits::kHttpConnDeadline;
      loop_.add(c->fd.get(), EPOLLIN, c.get());
      conns_.push_back(std::move(c));
    }
    update_listener(Clock::now());
  }

  void on_conn_io(Conn& c, uint32_t events) noexcept {
    if (c.done) return;
    if (c.out.empty() && (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) != 0) {
      char buf[1024];
      const ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
      if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        return drop(c);
      }
      c.in.append(buf, static_cast<size_t>(n));
      const bool complete =
          c.in.find("\r\n\r\n") != std::string::npos || c.in.find("\n\n") != std::string::npos;
      if (!complete && c.in.size() < kMaxHead) return;
      c.out = complete ? answer(c.in)
                       : "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                         "Content-Length: 0\r\n\r\n";
      if (!admission_.on_established(c.id)) return drop(c);
      loop_.mod(c.fd.get(), EPOLLOUT, &c);
    }
    while (c.out_pos < c.out.size()) {
      const ssize_t n = ::send(c.fd.get(), c.out.data() + c.out_pos, c.out.size() - c.out_pos,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      if (n <= 0) return drop(c);
      c.out_pos += static_cast<size_t>(n);
    }
    drop(c);
  }

  // Ready: the TLS process has its certificate in service and accepts
  // (its figures say so), and the beacon is not draining.
  bool ready() const { return have_stats_ && tls_.listening == 1 && !draining_; }

  std::string answer(const std::string& head) const {
    const std::string line = head.substr(0, head.find_first_of("\r\n"));
    auto reply = [](const char* status, const std::string& type, const std::string& body) {
      return std::string("HTTP/1.1 ") + status + "\r\nContent-Type: " + type +
             "\r\nContent-Length: " + std::to_string(body.size()) +
             "\r\nConnection: close\r\nCache-Control: no-store\r\n\r\n" + body;
    };
    const std::string text = "text/plain; charset=utf-8";
    if (line.rfind("GET ", 0) != 0 && line.rfind("HEAD ", 0) != 0)
      return reply("405 Method Not Allowed", text, "only GET\n");
    const size_t sp1 = line.find(' ');
    const size_t sp2 = line.find(' ', sp1 + 1);
    std::string path =
        line.substr(sp1 + 1, sp2 == std::string::npos ? std::string::npos : sp2 - sp1 - 1);
    if (const size_t q = path.find('?'); q != std::string::npos) path.resize(q);
    if (path == "/metrics") {
      ForwardFigures f;
      f.draining = draining_;
      f.log_dropped = log::dropped_lines();
      for (size_t r = 0; r < kRefusalKinds; r++)
        if (static_cast<Refusal>(r) != Refusal::kPaused)
          f.http_refused += admission_.refused(static_cast<Refusal>(r));
      return reply("200 OK", "text/plain; version=0.0.4; charset=utf-8",
                   render_metrics(tls_, f, CT_VERSION));
    }
    if (path == "/healthz") return reply("200 OK", text, "ok\n");
    if (path == "/readyz")
      return ready() ? reply("200 OK", text, "ready\n")
                     : reply("503 Service Unavailable", text,
                             draining_ ? "draining\n" : "not accepting connections\n");
    return reply("404 Not Found", text, "not found\n");
  }

  void drop(Conn& c) {
    if (c.done) return;
    c.done = true;
    admission_.on_closed(c.id);
    loop_.del(c.fd.get());
    c.fd.reset();
  }

  void on_tick(TimePoint now) noexcept override {
    for (Admission::Id id : admission_.expired(now))
      for (auto& c : conns_)
        if (c->id == id) drop(*c);
    for (auto it = conns_.begin(); it != conns_.end();) {
      if (!(*it)->done && now >= (*it)->deadline) drop(**it);
      if ((*it)->done) {
        loop_.retire(std::move(*it));
        it = conns_.erase(it);
      } else {
        ++it;
      }
    }
    update_listener(now);
  }

  TimePoint next_deadline() const override {
    TimePoint t = admission_.next_deadline();
    for (const auto& c : conns_) t = std::min(t, c->done ? Clock::now() : c->deadline);
    return t;
  }

  // /readyz turns false at once; the process serves /metrics until the TLS
  // process, whose pairs may take a while, is gone (its end of the data
  // channel closes when it exits).
  void on_drain() noexcept override { LOG_INFO("draining: /readyz now answers 503"); }
  bool drained() noexcept override { return !local_; }

  Listener listener_;
  Admission admission_{http_admission()};
  Admission::Id next_id_ = 0;
  std::list<std::unique_ptr<Conn>> conns_;
  UniqueFd spare_;
  Stats tls_;
  bool have_stats_ = false;
  log::Throttle refuse_log_;
};

}  // namespace

// The upstream port is the bridge's: the beacon's forwarding process connects nowhere.
SandboxSpec forward_sandbox(uint16_t) {
  return child_sandbox(kProcs.forward, kSyscalls);
}

int forward_main() {
  return run_child<ForwardProcess>();
}

}  // namespace ct::beacon
