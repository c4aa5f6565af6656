// The beacon's parent: flags, the certificate files, the listening sockets,
// and supervision of the TLS and forwarding processes (shared/parent/).
// Nothing from the network is ever parsed here.
#include <arpa/inet.h>
#include <sys/prctl.h>

#include <cerrno>
#include <string>

#include "beacon/beacon.h"
#include "beacon/metrics.h"
#include "beacon/options.h"
#include "beacon/procs.h"
#include "shared/base/log.h"
#include "shared/os/flags.h"
#include "shared/os/net.h"
#include "shared/parent/daemon_parent.h"
#include "shared/parent/host.h"
#include "shared/tls/beacon_server.h"

namespace ct::beacon {

namespace {

const char* kSummary =
    "cloudtaser-beacon: the relay of beacon mode. cloudtaser-broker and vault-bridge both dial\n"
    "out to it over TLS 1.3 (ALPN cloudtaser-beacon/1), say which rendezvous id they belong to,\n"
    "and it pairs a broker's connection with a bridge's and relays the bytes between them\n"
    "unchanged: the pinned mutual-TLS link of the two, which it cannot read.";

std::vector<FlagSpec> flag_specs() {
  return join_flag_specs({
      {
          {"listen", "ADDR:PORT", "where brokers and bridges connect (default 0.0.0.0:443)"},
          {"cert", "FILE", "PEM certificate chain presented to brokers and bridges"},
          {"key", "FILE", "PEM private key of --cert (unencrypted)"},
          {"client-ca", "FILE",
           "PEM CA certificate(s): when given, every broker and bridge must present a client "
           "certificate (clientAuth) that chains to it; without it none is asked for"},
          {"metrics-listen", "ADDR:PORT",
           "serve /metrics (Prometheus), /healthz and /readyz over plain HTTP, e.g. 0.0.0.0:9090"},
          {"pairing-timeout", "SECONDS",
           "how long a bridge waits for a broker of its id before NO_PEER (default 10)"},
          {"keepalive-interval", "SECONDS",
           "how often a waiting broker connection gets a KEEPALIVE (default 25)"},
          {"max-waiting-per-id", "N",
           "waiting broker connections, and waiting bridge connections, one rendezvous id may "
           "hold; more get OVER_CAPACITY (default 64)"},
          {"max-waiting", "N", "waiting connections in all; more get OVER_CAPACITY (default 4096)"},
          {"max-conns-per-source", "N",
           "connections one source address (an IPv6 /64) may hold at once, paired or not; more "
           "are closed at accept (default 1024)"},
          {"max-waiting-per-source", "N",
           "of those, connections waiting for a pairing (brokers and bridges); more get "
           "OVER_CAPACITY (default 256)"},
          {"drain-timeout", "SECONDS",
           "on SIGTERM, how long live pairs may take to finish (default 30)"},
      },
      last_flag_specs(),
  });
}

bool check_stats(Bytes body) {
  return decode_stats(body).has_value();
}

// While the TLS process is stuck or restarting nothing is accepted: /readyz
// must not go on saying "ready" from the last figures.
std::vector<uint8_t> stats_without_tls(Bytes last) {
  auto s = decode_stats(last);
  if (!s) return {};
  s->listening = 0;
  return encode_stats(*s);
}

class BeaconParent final : DaemonParent::Hooks {
 public:
  BeaconParent() : parent_(kProcs, *this, {check_stats, stats_without_tls}) {}

  int main(int argc, char** argv) {
    Flags f(flag_specs());
    if (auto parsed = f.parse(argc, argv); !parsed) return usage_error(kDaemon, parsed.what());
    const int common = parse_common_flags(f, kDaemon, kSummary, {"cert", "key"}, "", &flags_);
    if (common >= 0) return common;
    if (auto r = parse_limits(f); !r) return usage_error(kDaemon, r.what());
    MaterialStore store({f.get("cert"), f.get("key"), f.get("client-ca"), "", "", "", {}, ""},
                        validate_material);
    if (auto r = parent_.open_executables(); !r) return usage_error(kDaemon, r.what());
    if (auto r = store.load(); !r) return usage_error(kDaemon, r.what());
    SockAddr addr, metrics_addr;
    if (auto r = bind_listener(f.get("listen", "0.0.0.0:443"), "--listen", &listen_fd_, &addr); !r)
      return usage_error(kDaemon, r.what());
    if (f.has("metrics-listen"))
      if (auto r = bind_listener(f.get("metrics-listen"), "--metrics-listen", &metrics_fd_,
                                 &metrics_addr);
          !r)
        return usage_error(kDaemon, r.what());
    // The bound addresses (port 0 becomes the real port: tests rely on these lines).
    LOG_INFO("listening for brokers and bridges on %s (%s)", addr.str().c_str(),
             f.has("client-ca") ? "client certificate required" : "no client certificate");
    if (metrics_fd_) LOG_INFO("serving metrics on %s", metrics_addr.str().c_str());
    // Bound, never to bind again: a CAP_NET_BIND_SERVICE given for port 443
    // as an ambient capability (systemd's AmbientCapabilities=) ends here, so
    // the children start with no capability at all and need no capset(),
    // which the unit's system call filter forbids.
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0)
      LOG_WARN_ERRNO(errno, "cannot clear the ambient capabilities");
    return parent_.run(flags_, store);
  }

 private:
  Result<void> parse_limits(const Flags& f) {
    struct Num {
      const char* flag;
      unsigned max;
      uint32_t* out;
      uint32_t scale;
    };
    const Num nums[] = {
        {"pairing-timeout", kMaxTimeoutMs / 1000, &opts_.pairing_timeout_ms, 1000},
        {"keepalive-interval", kMaxTimeoutMs / 1000, &opts_.keepalive_ms, 1000},
        {"max-waiting-per-id", kMaxWaitingPerIdFlag, &opts_.waiting_per_id, 1},
        {"max-waiting", kMaxWaitingFlag, &opts_.waiting_total, 1},
        {"max-conns-per-source", kMaxPerSourceFlag, &opts_.per_source, 1},
        {"max-waiting-per-source", kMaxPerSourceFlag, &opts_.waiting_per_source, 1},
    };
    for (const Num& n : nums) {
      if (!f.has(n.flag)) continue;
      auto v = parse_seconds(f.get(n.flag), n.max);
      if (!v)
        return fail(std::string("bad --") + n.flag + " (a whole number, 1 to " +
                    std::to_string(n.max) + ")");
      *n.out = *v * n.scale;
    }
    return {};
  }

  static Result<void> validate_material(const Material& m) {
    auto ctx = BeaconServerContext::create(m);
    if (!ctx) return fail("--cert/--key/--client-ca: " + ctx.what());
    return {};
  }

  void send_extras(Supervisor::Which w, IpcChannel& ch) noexcept override {
    if (w == Supervisor::kTls) {
      ch.send(Msg::kListener, encode_options(opts_), listen_fd_.get());
      return;
    }
    if (metrics_fd_) ch.send(Msg::kMetricsListener, {}, metrics_fd_.get());
  }

  void on_drain() noexcept override {
    // The TLS process closes its copy too; then the port refuses, and
    // clients go to the next beacon of their order at once.
    listen_fd_.reset();
  }

  static constexpr const char* kDaemon = kProcs.daemon;
  CommonFlags flags_;
  Options opts_;
  DaemonParent parent_;
  UniqueFd listen_fd_, metrics_fd_;
};

}  // namespace

int parent_main(int argc, char** argv) {
  BeaconParent p;
  return p.main(argc, argv);
}

}  // namespace ct::beacon
