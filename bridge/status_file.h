// --status-file: the bridge's link state for node_exporter's textfile
// collector (Prometheus text format), rewritten atomically when the number of
// links up or a process's count of dropped log lines moves. The parent keeps
// it; nothing in it comes from the network.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "shared/base/cert_report.h"
#include "shared/base/result.h"
#include "shared/parent/supervisor.h"
#include "shared/wire/frame.h"

namespace ct::bridge {

// Unix time in seconds, to the millisecond (the file's timestamps).
double unix_seconds();

// Log lines each process dropped (its stderr full): counters over the
// bridge's life.
struct LogDropped {
  uint64_t tls = 0, forward = 0, parent = 0;
  bool operator==(const LogDropped&) const = default;
};

// The broker replicas: how many the brokers say they run, and the instances
// (instance_name) the bridge holds a usable link to.
struct Replicas {
  uint16_t expected = 0;
  std::vector<std::string> linked;
  bool operator==(const Replicas&) const = default;
};

// The file's text: the link state, and when it last changed.
// `vault`: OpenBao's state as the health probe last saw it, one series per
// state (1 for that one, 0 for the others).
std::string status_text(uint32_t links_up, double changed, double started,
                        const LogDropped& dropped, const Replicas& replicas = {},
                        UpstreamState vault = UpstreamState::kUnknown, const CertState& certs = {});

// Writes `text` to path atomically: path.tmp, fsync, rename. Mode 0644 whatever
// the umask (the unit's is 0077): the collector runs as another user, and the
// file holds no secret. Blocking, but a few hundred bytes on a local disk.
Result<void> write_atomically(const std::string& path, const std::string& text);

class StatusFile {
 public:
  // Writes the file once (no link yet): an unwritable path is a start-up
  // error (the Error says why), not a warning later.
  Result<void> open(std::string path, double now);
  bool enabled() const { return !path_.empty(); }
  // The TLS process's count of links up, the replicas and OpenBao's state;
  // the file is rewritten when one moved.
  // And the certificates (cert_report.h), which a reload or a new link moves.
  void links(uint32_t links_up, double now, Replicas replicas = {},
             UpstreamState vault = UpstreamState::kUnknown, CertState certs = {}) noexcept;
  // Each heartbeat answer brings a child's own count, which a restarted child
  // starts again from 0: the totals go on from what its predecessors reached.
  // The file is rewritten only when a total moved, so a full stderr costs at
  // most a write per second per process.
  void child_log_dropped(Supervisor::Which w, uint64_t lines) noexcept;
  // The child is gone: its successor's count starts from 0.
  void child_exited(Supervisor::Which w) noexcept { last_count_[w] = 0; }
  uint32_t links_up() const { return links_up_; }
  const LogDropped& dropped() const { return dropped_; }

 private:
  void rewrite() noexcept;

  std::string path_;  // empty: no --status-file
  uint32_t links_up_ = 0;
  Replicas replicas_;
  UpstreamState vault_ = UpstreamState::kUnknown;
  CertState certs_;
  double started_ = 0, changed_ = 0;
  bool failing_ = false;  // the last write failed (and was logged)
  LogDropped dropped_;
  uint64_t last_count_[2] = {0, 0};  // the current tls, forward process's own count
};

}  // namespace ct::bridge
