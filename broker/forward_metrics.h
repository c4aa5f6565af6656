// The broker's /metrics, /healthz and /readyz endpoint on --metrics-listen,
// and the probe-only endpoint (/healthz, /readyz) on --probe-listen, served by
// the forwarding process (it already owns the broker's plain local sockets
// and holds no key). Minimal HTTP/1.x: one GET per connection, the request
// head capped at 4 KiB and due kHttpHeadDeadline after accept, then the
// answer and close. Each listener has its own admission pools
// (shared/os/admission.h): a flood of idle connections cycles through the head
// pool by eviction, never holds it, and the listener pauses rather than
// accepting and closing. Kubelet's probes use their own listener so that no
// flood on the metrics port (which Prometheus must reach) can fail them.
#pragma once

#include <list>
#include <memory>
#include <string>
#include <vector>

#include "broker/metrics.h"
#include "shared/base/log.h"
#include "shared/os/admission.h"
#include "shared/os/loop.h"

namespace ct::broker {

// What the endpoints report, shared by the metrics and the probe listener.
struct MetricsState {
  std::vector<MetricSample> tls;  // from the TLS process, once a second
  CertState certs;                // and its certificates'
  ForwardCounters fwd;
  // Ready: at least one bridge connected and not draining.
  bool ready() const;
};

class MetricsServer {
 public:
  // spare_src: an fd to duplicate as the reserve for EMFILE (net.h accept_peer).
  MetricsServer(Loop& loop, UniqueFd listener, int spare_src, bool probes_only,
                MetricsState& state);
  ~MetricsServer();
  void tick(TimePoint now);
  TimePoint next_deadline() const;
  bool probes_only() const { return probes_only_; }

 private:
  struct Conn;
  struct Listener : Loop::Handler {
    MetricsServer* self = nullptr;
    void on_io(uint32_t) noexcept override { self->accept_all(); }
  };
  void accept_all() noexcept;
  void update_listener(TimePoint now) noexcept;
  void head_complete(Conn* c) noexcept;
  std::string answer(const std::string& request_head) const;
  void drop(Conn* c);
  void publish_counts();

  Loop& loop_;
  UniqueFd listener_fd_;
  UniqueFd spare_;
  int spare_src_;
  bool probes_only_;
  bool listening_ = false;
  Listener listener_;
  Admission admission_;
  Admission::Id next_id_ = 0;
  std::list<std::unique_ptr<Conn>> conns_;
  MetricsState& state_;
  log::Throttle refuse_log_;
};

}  // namespace ct::broker
