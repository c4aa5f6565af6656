// The broker's /metrics, /healthz and /readyz endpoint on --metrics-listen,
// served by the forwarding process (it already owns the broker's plain local
// sockets and holds no key). Minimal HTTP/1.x: one GET per connection, the
// request head capped at 4 KiB and 5 s, then the answer and close.
#pragma once

#include <list>
#include <memory>
#include <string>
#include <vector>

#include "shared/loop.h"
#include "shared/metrics.h"

namespace ct::broker {

class MetricsServer {
 public:
  MetricsServer(Loop& loop, UniqueFd listener);
  ~MetricsServer();
  void set_tls_samples(std::vector<MetricSample> s) { tls_ = std::move(s); }
  ForwardCounters& counters() { return fwd_; }
  // Ready: at least one bridge connected and not draining.
  bool ready() const;
  void tick(TimePoint now);
  TimePoint next_deadline() const;

 private:
  struct Conn;
  struct Listener : Loop::Handler {
    MetricsServer* self = nullptr;
    void on_io(uint32_t) noexcept override { self->accept_all(); }
  };
  void accept_all() noexcept;
  std::string answer(const std::string& request_head) const;
  void drop(Conn* c);

  Loop& loop_;
  UniqueFd listener_fd_;
  Listener listener_;
  std::list<std::unique_ptr<Conn>> conns_;
  std::vector<MetricSample> tls_;
  ForwardCounters fwd_;
};

}  // namespace ct::broker
