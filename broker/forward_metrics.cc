#include "broker/forward_metrics.h"

#include <fcntl.h>
#include <sys/socket.h>

#include <cerrno>

#include "shared/os/net.h"
#include "shared/wire/limits.h"

namespace ct::broker {

namespace {
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
}  // namespace

bool MetricsState::ready() const {
  if (fwd.draining) return false;
  for (const MetricSample& s : tls)
    if (s.id == MetricId::kBridgesConnected && s.value > 0) return true;
  return false;
}

struct MetricsServer::Conn : Loop::Handler {
  MetricsServer* self = nullptr;
  Admission::Id id = 0;
  UniqueFd fd;
  std::string in;
  std::string out;
  size_t out_pos = 0;
  TimePoint deadline;  // the whole exchange; the head's own is the admission's
  bool done = false;

  void on_io(uint32_t events) noexcept override {
    if (done) return;
    if (out.empty() && (events & (EPOLLIN | EPOLLHUP | EPOLLERR))) {
      char buf[1024];
      const ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
      if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
        return self->drop(this);
      }
      in.append(buf, static_cast<size_t>(n));
      const bool complete =
          in.find("\r\n\r\n") != std::string::npos || in.find("\n\n") != std::string::npos;
      if (!complete && in.size() < kMaxHead) return;
      out = complete ? self->answer(in)
                     : "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
                       "Content-Length: 0\r\n\r\n";
      self->head_complete(this);
      if (done) return;
      self->loop_.mod(fd.get(), EPOLLOUT, this);
    }
    while (out_pos < out.size()) {
      const ssize_t n =
          ::send(fd.get(), out.data() + out_pos, out.size() - out_pos, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      if (n <= 0) return self->drop(this);
      out_pos += static_cast<size_t>(n);
    }
    self->drop(this);
  }
};

MetricsServer::MetricsServer(Loop& loop, UniqueFd listener, int spare_src, bool probes_only,
                             MetricsState& state)
    : loop_(loop),
      listener_fd_(std::move(listener)),
      spare_src_(spare_src),
      probes_only_(probes_only),
      admission_(http_admission()),
      state_(state) {
  spare_.reset(fcntl(spare_src_, F_DUPFD_CLOEXEC, 0));
  listener_.self = this;
  update_listener(Clock::now());
}

MetricsServer::~MetricsServer() {
  for (auto& c : conns_)
    if (!c->done) loop_.del(c->fd.get());
  if (listening_) loop_.del(listener_fd_.get());
}

// In epoll only while a newcomer can be admitted; otherwise connections wait
// in the backlog until a head completes, expires or becomes evictable.
void MetricsServer::update_listener(TimePoint now) noexcept {
  const bool want = admission_.accepting(now);
  if (want == listening_) return;
  listening_ = want;
  if (want) {
    loop_.add(listener_fd_.get(), EPOLLIN, &listener_);
  } else {
    loop_.del(listener_fd_.get());
    admission_.count(Refusal::kPaused);
    publish_counts();
  }
}

void MetricsServer::publish_counts() {
  auto& dst = probes_only_ ? state_.fwd.probe_refusals : state_.fwd.metrics_refusals;
  for (size_t r = 0; r < kRefusalKinds; r++) dst[r] = admission_.refused(static_cast<Refusal>(r));
}

void MetricsServer::accept_all() noexcept {
  const char* port = probes_only_ ? "probe" : "metrics";
  for (int i = 0; i < 16 && listening_; i++) {
    const TimePoint now = Clock::now();
    if (!admission_.accepting(now)) break;
    sockaddr_storage peer{};
    bool shed = false;
    UniqueFd fd = accept_peer(listener_fd_.get(), &peer, &spare_, spare_src_, &shed);
    if (!fd) {
      if (!shed) break;
      admission_.count(Refusal::kFdLimit);
      LOG_WARN_THROTTLED(refuse_log_, "%s connection shed: out of file descriptors", port);
      continue;
    }
    auto src = source_key(peer);
    if (!src) continue;
    const Admission::Id id = ++next_id_;
    const auto d = admission_.on_accept(id, *src, now);
    if (d.evict != 0) {
      for (auto& c : conns_)
        if (c->id == d.evict) drop(c.get());
      LOG_WARN_THROTTLED(refuse_log_, "%s connection evicted: its request head was the oldest",
                         port);
    }
    if (!d.admit) {
      LOG_WARN_THROTTLED(refuse_log_, "%s connection from %s refused: %s", port, src->str().c_str(),
                         refusal_name(d.why));
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
  publish_counts();
  update_listener(Clock::now());
}

void MetricsServer::head_complete(Conn* c) noexcept {
  if (admission_.on_established(c->id)) return;
  // Evicted or expired in this same batch, or every answer slot is taken.
  drop(c);
  publish_counts();
}

std::string MetricsServer::answer(const std::string& head) const {
  const size_t eol = head.find_first_of("\r\n");
  const std::string line = head.substr(0, eol);
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
  if (path == "/metrics" && !probes_only_) {
    auto samples = state_.tls;
    samples.push_back(
        {MetricId::kLogDropped, static_cast<uint32_t>(LogProcess::kForward), log::dropped_lines()});
    return reply("200 OK", "text/plain; version=0.0.4; charset=utf-8",
                 render_metrics(samples, state_.fwd, CT_VERSION, state_.certs));
  }
  if (path == "/healthz") return reply("200 OK", text, "ok\n");
  if (path == "/readyz")
    return state_.ready() ? reply("200 OK", text, "ready\n")
                          : reply("503 Service Unavailable", text,
                                  state_.fwd.draining ? "draining\n" : "no bridge connected\n");
  return reply("404 Not Found", text, "not found\n");
}

void MetricsServer::drop(Conn* c) {
  if (c->done) return;
  c->done = true;
  admission_.on_closed(c->id);
  loop_.del(c->fd.get());
  c->fd.reset();
}

void MetricsServer::tick(TimePoint now) {
  for (Admission::Id id : admission_.expired(now))
    for (auto& c : conns_)
      if (c->id == id) drop(c.get());
  for (auto it = conns_.begin(); it != conns_.end();) {
    Conn* c = it->get();
    if (!c->done && now >= c->deadline) drop(c);
    if (c->done) {
      loop_.retire(std::move(*it));
      it = conns_.erase(it);
    } else {
      ++it;
    }
  }
  publish_counts();
  update_listener(now);
}

TimePoint MetricsServer::next_deadline() const {
  TimePoint t = admission_.next_deadline();
  for (const auto& c : conns_) t = std::min(t, c->done ? Clock::now() : c->deadline);
  return t;
}

}  // namespace ct::broker
