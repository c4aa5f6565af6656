#include "broker/forward_metrics.h"

#include <sys/socket.h>

#include <cerrno>

#include "shared/log.h"

namespace ct::broker {

namespace {
constexpr size_t kMaxHead = 4096;
constexpr size_t kMaxConns = 16;  // scrapers and probes; more wait in the backlog
constexpr auto kConnDeadline = std::chrono::seconds(5);
}  // namespace

struct MetricsServer::Conn : Loop::Handler {
  MetricsServer* self = nullptr;
  UniqueFd fd;
  std::string in;
  std::string out;
  size_t out_pos = 0;
  TimePoint deadline;
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

MetricsServer::MetricsServer(Loop& loop, UniqueFd listener)
    : loop_(loop), listener_fd_(std::move(listener)) {
  listener_.self = this;
  loop_.add(listener_fd_.get(), EPOLLIN, &listener_);
}

MetricsServer::~MetricsServer() {
  for (auto& c : conns_)
    if (!c->done) loop_.del(c->fd.get());
  loop_.del(listener_fd_.get());
}

bool MetricsServer::ready() const {
  if (fwd_.draining) return false;
  for (const MetricSample& s : tls_)
    if (s.id == MetricId::kBridgesConnected && s.value > 0) return true;
  return false;
}

void MetricsServer::accept_all() noexcept {
  for (int i = 0; i < 16; i++) {
    UniqueFd fd(accept4(listener_fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (!fd) return;
    if (conns_.size() >= kMaxConns) continue;  // closes it
    auto c = std::make_unique<Conn>();
    c->self = this;
    c->fd = std::move(fd);
    c->deadline = Clock::now() + kConnDeadline;
    loop_.add(c->fd.get(), EPOLLIN, c.get());
    conns_.push_back(std::move(c));
  }
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
  if (path == "/metrics") {
    auto samples = tls_;
    samples.push_back(
        {MetricId::kLogDropped, static_cast<uint32_t>(LogProcess::kForward), log::dropped_lines()});
    return reply("200 OK", "text/plain; version=0.0.4; charset=utf-8",
                 render_metrics(samples, fwd_, CT_VERSION));
  }
  if (path == "/healthz") return reply("200 OK", text, "ok\n");
  if (path == "/readyz")
    return ready() ? reply("200 OK", text, "ready\n")
                   : reply("503 Service Unavailable", text,
                           fwd_.draining ? "draining\n" : "no bridge connected\n");
  return reply("404 Not Found", text, "not found\n");
}

void MetricsServer::drop(Conn* c) {
  if (c->done) return;
  c->done = true;
  loop_.del(c->fd.get());
  c->fd.reset();
}

void MetricsServer::tick(TimePoint now) {
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
}

TimePoint MetricsServer::next_deadline() const {
  TimePoint t = TimePoint::max();
  for (const auto& c : conns_) t = std::min(t, c->done ? Clock::now() : c->deadline);
  return t;
}

}  // namespace ct::broker
