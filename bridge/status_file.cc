#include "bridge/status_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <utility>

#include "shared/base/log.h"
#include "shared/base/unique_fd.h"

namespace ct::bridge {

double unix_seconds() {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  return static_cast<double>(ms) / 1000.0;
}

std::string status_text(uint32_t links_up, double changed, double started,
                        const LogDropped& dropped, const Replicas& replicas, UpstreamState vault,
                        const CertState& certs) {
  char buf[2048];
  const int n = std::snprintf(
      buf, sizeof buf,
      "# HELP cloudtaser_bridge_build_info Build information.\n"
      "# TYPE cloudtaser_bridge_build_info gauge\n"
      "cloudtaser_bridge_build_info{version=\"%s\"} 1\n"
      "# HELP cloudtaser_bridge_link_up 1 while at least one link to the broker is up.\n"
      "# TYPE cloudtaser_bridge_link_up gauge\n"
      "cloudtaser_bridge_link_up %u\n"
      "# HELP cloudtaser_bridge_links_up Links to the broker that are up (2 while a draining "
      "broker's link finishes its streams).\n"
      "# TYPE cloudtaser_bridge_links_up gauge\n"
      "cloudtaser_bridge_links_up %u\n"
      "# HELP cloudtaser_bridge_last_change_timestamp_seconds Unix time the number of links up "
      "last changed (or the bridge started).\n"
      "# TYPE cloudtaser_bridge_last_change_timestamp_seconds gauge\n"
      "cloudtaser_bridge_last_change_timestamp_seconds %.3f\n"
      "# HELP cloudtaser_bridge_start_time_seconds Unix time the bridge started.\n"
      "# TYPE cloudtaser_bridge_start_time_seconds gauge\n"
      "cloudtaser_bridge_start_time_seconds %.3f\n"
      "# HELP cloudtaser_bridge_log_lines_dropped_total Log lines a bridge process dropped "
      "because its stderr was full.\n"
      "# TYPE cloudtaser_bridge_log_lines_dropped_total counter\n"
      "cloudtaser_bridge_log_lines_dropped_total{process=\"parent\"} %llu\n"
      "cloudtaser_bridge_log_lines_dropped_total{process=\"tls\"} %llu\n"
      "cloudtaser_bridge_log_lines_dropped_total{process=\"forward\"} %llu\n",
      CT_VERSION, links_up > 0 ? 1u : 0u, links_up, changed, started,
      static_cast<unsigned long long>(dropped.parent), static_cast<unsigned long long>(dropped.tls),
      static_cast<unsigned long long>(dropped.forward));
  if (n < 0) return {};
  std::string text(buf, std::min(sizeof buf - 1, static_cast<size_t>(n)));
  // Broker replicas: an alert on expected > linked catches a bridge that
  // lost a replica (docs/vault-host.md). Instance names are 16 hex digits
  // (checked where they enter the parent: msgs.cc decode_status).
  text +=
      "# HELP cloudtaser_bridge_broker_replicas_expected Broker replicas the brokers say they "
      "run (0 before the first link).\n"
      "# TYPE cloudtaser_bridge_broker_replicas_expected gauge\n"
      "cloudtaser_bridge_broker_replicas_expected " +
      std::to_string(replicas.expected) +
      "\n"
      "# HELP cloudtaser_bridge_broker_replicas_linked Distinct broker instances this bridge "
      "holds a usable link to.\n"
      "# TYPE cloudtaser_bridge_broker_replicas_linked gauge\n"
      "cloudtaser_bridge_broker_replicas_linked " +
      std::to_string(replicas.linked.size()) +
      "\n"
      "# HELP cloudtaser_bridge_broker_instance_linked 1 for each broker instance linked.\n"
      "# TYPE cloudtaser_bridge_broker_instance_linked gauge\n";
  for (const std::string& i : replicas.linked)
    text += "cloudtaser_bridge_broker_instance_linked{instance=\"" + i + "\"} 1\n";
  // The brokers send no stream to a sealed, uninitialised or unreachable
  // OpenBao: an alert on those catches a node out of service.
  text +=
      "# HELP cloudtaser_bridge_vault_state 1 for the state OpenBao's health endpoint last "
      "answered (unknown: not polled, or not yet).\n"
      "# TYPE cloudtaser_bridge_vault_state gauge\n";
  for (uint8_t st = 0; st < kUpstreamStates; st++)
    text += "cloudtaser_bridge_vault_state{state=\"" +
            std::string(upstream_state_name(static_cast<UpstreamState>(st))) + "\"} " +
            (static_cast<UpstreamState>(st) == vault ? "1" : "0") + "\n";
  text += render_cert_state("cloudtaser_bridge", certs);
  return text;
}

Result<void> write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) return fail_errno(errno, "cannot write " + tmp);
  UniqueFd f(fd);
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t w = ::write(f.get(), text.data() + off, text.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      const int code = w < 0 ? errno : ENOSPC;
      ::unlink(tmp.c_str());
      return fail_errno(code, "cannot write " + tmp);
    }
    off += static_cast<size_t>(w);
  }
  if (::fchmod(f.get(), 0644) != 0 || ::fsync(f.get()) != 0) {
    const int code = errno;
    ::unlink(tmp.c_str());
    return fail_errno(code, "cannot write " + tmp);
  }
  f.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    const int code = errno;
    ::unlink(tmp.c_str());
    return fail_errno(code, "cannot rename " + tmp + " to " + path);
  }
  return {};
}

Result<void> StatusFile::open(std::string path, double now) {
  if (path.empty()) return fail("empty path");
  path_ = std::move(path);
  started_ = changed_ = now;
  return write_atomically(path_, status_text(0, changed_, started_, dropped_));
}

void StatusFile::links(uint32_t links_up, double now, Replicas replicas, UpstreamState vault,
                       CertState certs) noexcept {
  if (!enabled() ||
      (links_up == links_up_ && replicas == replicas_ && vault == vault_ && certs == certs_))
    return;
  if (links_up != links_up_) changed_ = now;
  links_up_ = links_up;
  replicas_ = std::move(replicas);
  vault_ = vault;
  certs_ = std::move(certs);
  rewrite();
}

void StatusFile::child_log_dropped(Supervisor::Which w, uint64_t lines) noexcept {
  if (lines < last_count_[w]) last_count_[w] = 0;
  uint64_t& total = w == Supervisor::kTls ? dropped_.tls : dropped_.forward;
  const LogDropped before = dropped_;
  total += lines - last_count_[w];
  last_count_[w] = lines;
  dropped_.parent = log::dropped_lines();
  if (enabled() && !(dropped_ == before)) rewrite();
}

void StatusFile::rewrite() noexcept {
  dropped_.parent = log::dropped_lines();
  const Result<void> r = write_atomically(
      path_, status_text(links_up_, changed_, started_, dropped_, replicas_, vault_, certs_));
  if (r) {
    failing_ = false;
  } else if (!failing_) {  // logged once until a write succeeds again
    failing_ = true;
    LOG_WARN("--status-file: %s", r.what().c_str());
  }
}

}  // namespace ct::bridge
