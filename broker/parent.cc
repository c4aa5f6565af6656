// The broker's parent: flags, certificate files, the two listening sockets,
// and supervision of the TLS and forwarding processes. Nothing from the
// network is ever parsed here.
#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <arpa/inet.h>
#include <string>

#include "broker/broker.h"
#include "broker/metrics.h"
#include "broker/procs.h"
#include "shared/base/log.h"
#include "shared/os/admission.h"
#include "shared/os/flags.h"
#include "shared/os/net.h"
#include "shared/parent/daemon_parent.h"
#include "shared/parent/dialer.h"
#include "shared/parent/host.h"
#include "shared/tls/beacon_config.h"
#include "shared/tls/context.h"
#include "shared/tls/pairing.h"
#include "shared/wire/frame.h"
#include "shared/wire/limits.h"
#include "shared/wire/origin.h"

namespace ct::broker {

namespace {

const char* kSummary =
    "cloudtaser-broker: the in-cluster end of the reverse-connect tunnel. vault-bridge dials\n"
    "out to --bridge-listen over mutual TLS 1.3; every wrapper connection on --service-listen\n"
    "becomes a stream to a connected bridge, which carries it to OpenBao. The broker only\n"
    "forwards bytes; wrapper traffic is end-to-end encrypted when wrappers use TLS.";

std::vector<FlagSpec> flag_specs() {
  return join_flag_specs({
      {
          {"bridge-listen", "ADDR:PORT",
           "where bridges connect (mutual TLS), e.g. 0.0.0.0:9443 (reverse-connect mode; or "
           "--beacon-address)"},
          {"beacon-address", "HOST[:PORT]",
           "beacon relay mode: dial OUT to this cloudtaser-beacon (port 443 by default) and "
           "wait there for bridges; repeat for several (it waits at every one); nothing "
           "listens for bridges",
           true},
          {"beacon-ca", "FILE", "beacon mode: PEM CA the beacons' certificates chain to"},
          {"beacon-pin", "sha256//BASE64",
           "beacon mode: also require a beacon certificate key with this pin (repeatable)", true},
          {"beacon-cert", "FILE",
           "beacon mode, optional: a client certificate for a beacon that requires one (its "
           "--client-ca); with --beacon-key"},
          {"beacon-key", "FILE", "beacon mode: the private key of --beacon-cert"},
          {"pairing-key-file", "FILE",
           "beacon mode: the key shared with the bridges (from cloudtaser-certs); the beacon "
           "sees only an id derived from it"},
          {"beacon-pool", "N",
           "beacon mode: connections kept waiting for bridges at each beacon (default 4)"},
          {"service-listen", "ADDR:PORT", "where wrappers connect, e.g. 0.0.0.0:8443"},
      },
      identity_flag_specs(
          {"cert", "key", "bridges", "bridge certificates", "bridge", "bridges", "broker"}),
      {
          {"pending-timeout", "SECONDS",
           "how long a wrapper waits for a bridge when none is connected (default 10)"},
          {"metrics-listen", "ADDR:PORT",
           "serve /metrics (Prometheus), /healthz and /readyz over plain HTTP, e.g. 0.0.0.0:9090"},
          {"probe-listen", "ADDR:PORT",
           "serve only /healthz and /readyz, for kubelet's probes, on a port of their own so that "
           "no flood on --metrics-listen can fail them, e.g. 0.0.0.0:9091"},
          {"max-wrappers-per-source", "N",
           "wrapper connections one source address (an IPv6 /64) may hold at once; more are "
           "refused at accept (default 256)"},
          {"cluster-name", "NAME",
           "this cluster's name (1 to 63 printable ASCII characters, no space): carried with "
           "every stream so that a bridge with --proxy-protocol tells OpenBao which cluster a "
           "client is in (the chart sets it from broker.clusterName)"},
          {"replicas", "N",
           "how many broker replicas the deployment runs (default 1): every bridge links to "
           "that many distinct brokers (the chart sets it from broker.replicas)"},
          {"drain-timeout", "SECONDS",
           "on SIGTERM, how long open streams may take to finish (default 30)"},
          {"memory-budget", "MIB",
           "stream data the TLS and the forwarding process may each hold, e.g. for wrappers that "
           "stopped reading (default 32; the pod's memory limit must exceed twice this plus "
           "about 40 MiB)"},
      },
      last_flag_specs(),
  });
}

// STATS from the TLS process must decode as the broker's figures.
bool check_stats(Bytes body) {
  return decode_metrics(body).has_value();
}

// While the TLS process is stuck or restarting, no bridge is connected:
// /readyz must not go on saying "ready" from the last figures.
std::vector<uint8_t> stats_without_tls(Bytes last) {
  CertState certs;
  auto samples = decode_metrics(last, &certs);
  if (!samples) return {};
  for (MetricSample& m : *samples)
    if (m.id == MetricId::kBridgesConnected) m.value = 0;
  // Nor are the bridges' certificates on links that went with it.
  std::erase_if(certs.certs, [](const CertReport& c) { return c.role == CertRole::kPeer; });
  return encode_metrics(*samples, certs);
}

class BrokerParent final : DaemonParent::Hooks {
 public:
  BrokerParent()
      : parent_(kProcs, *this, {check_stats, stats_without_tls}), dialer_(parent_.loop()) {}

  int main(int argc, char** argv) {
    Flags f(flag_specs());
    if (auto parsed = f.parse(argc, argv); !parsed) return usage_error(kDaemon, parsed.what());
    const int common = parse_common_flags(
        f, kDaemon, kSummary, {"service-listen", "cert", "key", "ca-cert"}, "bridge-pin", &flags_);
    if (common >= 0) return common;
    ProcSettings& settings = flags_.settings;
    if (f.has("bridge-listen") == f.has("beacon-address"))
      return usage_error(kDaemon,
                         "give --bridge-listen (reverse-connect) or --beacon-address (beacon "
                         "relay), one of the two");
    if (f.has("bridge-listen")) {
      for (const char* b : {"beacon-ca", "beacon-pin", "pairing-key-file", "beacon-pool",
                            "beacon-cert", "beacon-key"})
        if (f.has(b))
          return usage_error(kDaemon, std::string("--") + b + " goes with --beacon-address");
    } else {
      auto beacons = parse_beacon_flags(f, &settings, &beacon_files_);
      if (!beacons) return usage_error(kDaemon, beacons.what());
      beacons_ = std::move(beacons).value();
      settings.beacon_pool = kDefaultBeaconPool;
      if (f.has("beacon-pool")) {
        auto n = parse_seconds(f.get("beacon-pool"), kMaxBeaconPool);
        if (!n || *n == 0)
          return usage_error(kDaemon, "bad --beacon-pool (a whole number, 1 to " +
                                          std::to_string(kMaxBeaconPool) + ")");
        settings.beacon_pool = static_cast<uint16_t>(*n);
      }
    }
    if (f.has("max-wrappers-per-source")) {
      auto n = parse_seconds(f.get("max-wrappers-per-source"), limits::kMaxWrappersPerSourceFlag);
      if (!n || *n == 0)
        return usage_error(kDaemon, "bad --max-wrappers-per-source (a whole number, 1 to 16384)");
      wrapper_opts_.max_per_source = *n;
    }
    if (f.has("pending-timeout")) {
      auto s = parse_seconds(f.get("pending-timeout"), 3600);
      if (!s) return usage_error(kDaemon, "bad --pending-timeout (whole seconds, 1 to 3600)");
      settings.pending_timeout_ms = *s * 1000;
    }
    if (f.has("cluster-name")) {
      const std::string name = f.get("cluster-name");
      if (!valid_cluster_name(name))
        return usage_error(kDaemon, "bad --cluster-name (1 to " +
                                        std::to_string(limits::kMaxClusterName) +
                                        " printable ASCII characters, no space or control "
                                        "character)");
      settings.cluster_name = name;
    }
    if (f.has("replicas")) {
      auto n = parse_seconds(f.get("replicas"), limits::kMaxReplicas);
      if (!n || *n == 0)
        return usage_error(kDaemon, "bad --replicas (a whole number, 1 to " +
                                        std::to_string(limits::kMaxReplicas) + ")");
      settings.replicas = static_cast<uint16_t>(*n);
    }
    // One id for this broker's whole life (a restarted TLS process keeps it):
    // bridges tell replicas apart by it.
    if (getrandom(settings.instance.data(), settings.instance.size(), 0) !=
        static_cast<ssize_t>(settings.instance.size()))
      return usage_error(kDaemon, std::string("cannot draw an instance id: ") + strerror(errno));
    if (auto pins = choose_pin_source(f.get("cert"), "bridge.pin", &flags_); !pins)
      return usage_error(kDaemon, pins.what());
    MaterialFiles files;
    files.cert = f.get("cert");
    files.key = f.get("key");
    files.ca = f.get("ca-cert");
    files.pin_file = flags_.pin_file;
    files.pins = flags_.pins;
    files.pin_flag = flags_.pin_flag;
    files.beacon_ca = beacon_files_.beacon_ca;
    files.beacon_pins = beacon_files_.beacon_pins;
    files.beacon_cert = beacon_files_.beacon_cert;
    files.beacon_key = beacon_files_.beacon_key;
    MaterialStore store(std::move(files), validate_material);
    if (auto r = parent_.open_executables(); !r) return usage_error(kDaemon, r.what());
    if (auto r = store.load(); !r) return usage_error(kDaemon, r.what());
    SockAddr bridge_addr, service_addr;
    if (beacons_.empty())
      if (Result<void> st =
              bind_listener(f.get("bridge-listen"), "--bridge-listen", &bridge_fd_, &bridge_addr);
          !st)
        return usage_error(kDaemon, st.what());
    if (Result<void> st =
            bind_listener(f.get("service-listen"), "--service-listen", &service_fd_, &service_addr);
        !st)
      return usage_error(kDaemon, st.what());
    SockAddr metrics_addr;
    if (f.has("metrics-listen"))
      if (Result<void> st = bind_listener(f.get("metrics-listen"), "--metrics-listen", &metrics_fd_,
                                          &metrics_addr);
          !st)
        return usage_error(kDaemon, st.what());
    // The bound addresses (port 0 becomes the real port: tests rely on this line).
    if (beacons_.empty())
      LOG_INFO("listening for bridges on %s and wrappers on %s", bridge_addr.str().c_str(),
               service_addr.str().c_str());
    else
      LOG_INFO(
          "beacon relay mode: waiting for bridges at %s (rendezvous %s, %u connection(s) "
          "each); listening for wrappers on %s",
          join(settings.beacons).c_str(), rendezvous_name(settings.rendezvous).c_str(),
          settings.beacon_pool, service_addr.str().c_str());
    SockAddr probe_addr;
    if (f.has("probe-listen"))
      if (Result<void> st =
              bind_listener(f.get("probe-listen"), "--probe-listen", &probe_fd_, &probe_addr);
          !st)
        return usage_error(kDaemon, st.what());
    if (metrics_fd_) LOG_INFO("serving metrics on %s", metrics_addr.str().c_str());
    if (probe_fd_) LOG_INFO("serving probes on %s", probe_addr.str().c_str());
    LOG_INFO("instance %s, one of %u replica(s)%s%s", instance_name(settings.instance).c_str(),
             settings.replicas, settings.cluster_name.empty() ? "" : ", cluster ",
             settings.cluster_name.c_str());
    return parent_.run(flags_, store);
  }

 private:
  static Result<void> validate_material(const Material& m) {
    auto ctx = TlsContext::create(TlsContext::Side::kServer, m, "");
    if (!ctx) return fail("--cert/--key/--ca-cert: " + ctx.what());
    if (!m.beacon_ca_pem.empty()) {
      auto b = TlsContext::create_beacon(m);
      if (!b) return fail("--beacon-ca: " + b.what());
    }
    return {};
  }

  // Beacon mode: the TLS process asks for a connection to one beacon (its
  // index in the settings' list); one dial at a time.
  bool on_extra_message(Supervisor::Which w, IpcMessage& m) noexcept override {
    if (w != Supervisor::kTls || m.type != Msg::kDialRequest || beacons_.empty()) return false;
    if (dialer_.busy() || m.body.size() != 1 || m.body[0] >= beacons_.size()) return false;
    dialer_.start(beacons_[m.body[0]], [this](Result<UniqueFd> fd) {
      send_dial_result(parent_.channel(Supervisor::kTls), fd);
    });
    return true;
  }

  TimePoint tick(TimePoint now) noexcept override { return dialer_.tick(now); }

  void on_child_exited(Supervisor::Which w) noexcept override {
    if (w == Supervisor::kTls) dialer_.abandon();  // the asker is gone
  }

  void send_extras(Supervisor::Which w, IpcChannel& ch) noexcept override {
    if (w == Supervisor::kTls) {
      if (bridge_fd_) ch.send(Msg::kListener, {}, bridge_fd_.get());
      return;
    }
    ch.send(Msg::kListener, encode_listener_options(wrapper_opts_), service_fd_.get());
    if (metrics_fd_) ch.send(Msg::kMetricsListener, {}, metrics_fd_.get());
    if (probe_fd_) ch.send(Msg::kMetricsListener, encode_listener_options({0, 1}), probe_fd_.get());
  }

  void on_drain() noexcept override {
    // The children close their copies too; once all are closed the ports
    // refuse, and load balancers and bridges go to another broker at once.
    bridge_fd_.reset();
    service_fd_.reset();
  }

  static constexpr const char* kDaemon = kProcs.daemon;
  static constexpr uint16_t kDefaultBeaconPool = 4;
  CommonFlags flags_;
  DaemonParent parent_;
  MaterialFiles beacon_files_;     // beacon mode: --beacon-ca and --beacon-pin
  std::vector<HostPort> beacons_;  // beacon mode: in the order of settings.beacons
  Dialer dialer_;
  UniqueFd bridge_fd_, service_fd_, metrics_fd_, probe_fd_;
  ListenerOptions wrapper_opts_{limits::kDefaultWrappersPerSource, 0};
};

}  // namespace

int parent_main(int argc, char** argv) {
  BrokerParent p;
  return p.main(argc, argv);
}

}  // namespace ct::broker
