// The bridge's parent: flags, certificate files, name resolution and the
// outbound connections to the broker (dialled here, handed to the TLS process
// as connected fds), and supervision of the TLS and forwarding processes.
// Nothing from the network is ever parsed here. With --status-file it also
// keeps a node_exporter textfile-collector file saying whether the link is up.
#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "bridge/bridge.h"
#include "bridge/procs.h"
#include "bridge/status_file.h"
#include "bridge/vault_health.h"
#include "shared/base/log.h"
#include "shared/base/unique_fd.h"
#include "shared/os/flags.h"
#include "shared/os/net.h"
#include "shared/os/resolver.h"
#include "shared/parent/daemon_parent.h"
#include "shared/parent/dialer.h"
#include "shared/tls/beacon_config.h"
#include "shared/tls/context.h"
#include "shared/tls/pairing.h"
#include "shared/wire/limits.h"

namespace ct::bridge {

namespace {

const char* kSummary =
    "vault-bridge: runs beside OpenBao, dials OUT to cloudtaser-broker over mutual TLS 1.3\n"
    "(pinned keys), and carries each wrapper connection the broker receives to --vault-addr.\n"
    "It opens no listening port, so the OpenBao host can deny all inbound traffic.";

std::vector<FlagSpec> flag_specs() {
  return join_flag_specs({
      {
          {"broker-address", "HOST:PORT",
           "the broker's bridge endpoint, e.g. broker.prod.example.com:443 (reverse-connect "
           "mode; or --beacon-address)"},
          {"beacon-address", "HOST[:PORT]",
           "beacon relay mode: a cloudtaser-beacon both sides dial (port 443 by default); "
           "repeat for several, tried in the order both sides derive from the pairing key",
           true},
          {"beacon-ca", "FILE", "beacon mode: PEM CA the beacons' certificates chain to"},
          {"beacon-pin", "sha256//BASE64",
           "beacon mode: also require a beacon certificate key with this pin (repeatable)", true},
          {"beacon-cert", "FILE",
           "beacon mode, optional: a client certificate for a beacon that requires one (its "
           "--client-ca); with --beacon-key"},
          {"beacon-key", "FILE", "beacon mode: the private key of --beacon-cert"},
          {"pairing-key-file", "FILE",
           "beacon mode: the key shared with the brokers (from cloudtaser-certs); the beacon "
           "sees only an id derived from it"},
          {"vault-addr", "URL", "OpenBao on this host: http://127.0.0.1:8200 or https://..."},
      },
      identity_flag_specs({"client-cert", "client-key", "the broker", "the broker's certificate",
                           "broker", "a broker", "bridge"}),
      {
          {"service-cert", "FILE",
           "PEM certificate wrappers trust (SAN: the broker's in-cluster name); their TLS ends "
           "here and OpenBao gets plaintext on loopback (default: service.crt beside "
           "--client-cert)"},
          {"service-key", "FILE",
           "PEM private key of --service-cert (default: service.key beside it)"},
          {"service-name", "NAME",
           "the name wrappers reach the broker by, which --service-cert must carry (default "
           "cloudtaser-broker.cloudtaser-system.svc)"},
          {"proxy-protocol", "",
           "write a PROXY protocol v2 header before the first byte of every connection to "
           "OpenBao, with the wrapper's address, the broker's cluster name and the stream's id "
           "(OpenBao's listener must allow it from this host: docs/vault-host.md)"},
          {"allow-plaintext-upstream-over-network", "",
           "allow an http:// --vault-addr that is not a loopback address (wrappers' tokens and "
           "secrets then cross that network in plaintext)"},
          {"allow-plaintext-streams", "",
           "carry wrapper streams unchanged with an http:// --vault-addr and no service "
           "certificate (the broker can then read them; for tests only)"},
          {"broker-name", "NAME",
           "name (or IP) the broker's certificate must carry (default: host of --broker-address; "
           "in beacon mode none, the broker's pin and CA still apply)"},
          {"drain-timeout", "SECONDS",
           "on SIGTERM, how long open streams may take to finish (default 30)"},
          {"stream-idle-timeout", "SECONDS",
           "reset a stream that carried no byte either way for this long (default 300, 0: never). "
           "OpenBao itself closes a keep-alive connection idle for 5 minutes and cancels a request "
           "after 90 s, so the default cuts nothing OpenBao lets run; raise it (or 0) for streams "
           "that may stay silent longer, e.g. sys/monitor or event subscriptions"},
          {"memory-budget", "MIB",
           "stream data the TLS and the forwarding process may each hold, e.g. for wrappers that "
           "stopped reading while OpenBao sends (default 32; the host must have twice this plus "
           "about 40 MiB to spare)"},
          {"vault-health-path", "PATH",
           "OpenBao's health endpoint, polled to tell the brokers whether this node is active, "
           "a standby, sealed, uninitialised or unreachable (default /v1/sys/health)"},
          {"vault-health-interval", "SECONDS",
           "poll it every SECONDS, each poll answered within 2 s (default 5; 0: never, for an "
           "upstream that is not OpenBao: the brokers then see its state as unknown and still "
           "use it). With an https:// --vault-addr, polled only with --vault-ca"},
          {"vault-ca", "FILE",
           "PEM CA that signed OpenBao's listener certificate, for polling an https:// "
           "--vault-addr: the probe's TLS verifies OpenBao's certificate against it and the host "
           "named in --vault-addr (re-read on SIGHUP). Without it such an OpenBao is not polled "
           "(wrappers' own TLS to it never needs it)"},
          {"status-file", "PATH",
           "keep the link state in PATH (Prometheus text format, written atomically through "
           "PATH.tmp) for node_exporter's textfile collector; name it *.prom"},
      },
      last_flag_specs(),
  });
}

// "http://host:port[/]" or "https://host:port[/]" -> host:port. The scheme
// only says what the wrappers speak; the bridge passes bytes unchanged.
Result<void> parse_vault_addr(const std::string& url, HostPort* out, bool* https) {
  std::string rest;
  uint16_t def_port = 0;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
    def_port = 80;
  } else if (url.rfind("https://", 0) == 0) {
    rest = url.substr(8);
    def_port = 443;
    *https = true;
  } else {
    return fail("bad --vault-addr '" + url + "': expected http://HOST:PORT or https://HOST:PORT");
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos || rest.find('?') != std::string::npos ||
      rest.find('@') != std::string::npos)
    return fail("bad --vault-addr '" + url + "': only scheme, host and port are allowed");
  const bool has_port = rest.rfind(':') != std::string::npos &&
                        (rest.front() != '[' || rest.rfind(']') < rest.rfind(':'));
  if (!has_port) rest += ":" + std::to_string(def_port);
  auto hp = parse_host_port(rest);
  if (!hp) return fail("bad --vault-addr '" + url + "': " + hp.what());
  *out = *hp;
  return {};
}

// 127.0.0.0/8, ::1 and ::ffff:127.0.0.0/104: traffic that never leaves the host.
bool is_loopback(const SockAddr& a) {
  if (a.family() == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&a.ss);
    return (ntohl(in->sin_addr.s_addr) >> 24) == 127;
  }
  if (a.family() == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&a.ss);
    if (IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr)) return true;
    return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) && in6->sin6_addr.s6_addr[12] == 127;
  }
  return false;
}

class BridgeParent final : DaemonParent::Hooks {
 public:
  BridgeParent() : parent_(kProcs, *this), dialer_(parent_.loop()) {}

  int main(int argc, char** argv) {
    Flags f(flag_specs());
    if (auto parsed = f.parse(argc, argv); !parsed) return usage_error(kDaemon, parsed.what());
    const int common = parse_common_flags(f, kDaemon, kSummary,
                                          {"vault-addr", "client-cert", "client-key", "ca-cert"},
                                          "broker-pin", &flags_);
    if (common >= 0) return common;
    ProcSettings& settings = flags_.settings;
    if (f.has("broker-address") == f.has("beacon-address"))
      return usage_error(kDaemon,
                         "give --broker-address (reverse-connect) or --beacon-address (beacon "
                         "relay), one of the two");
    if (f.has("broker-address")) {
      for (const char* b :
           {"beacon-ca", "beacon-pin", "pairing-key-file", "beacon-cert", "beacon-key"})
        if (f.has(b))
          return usage_error(kDaemon, std::string("--") + b + " goes with --beacon-address");
      auto broker = parse_host_port(f.get("broker-address"));
      if (!broker)
        return usage_error(
            kDaemon, "bad --broker-address '" + f.get("broker-address") + "': " + broker.what());
      broker_ = *broker;
      settings.peer_name = f.get("broker-name", broker_.host);
    } else {
      auto beacons = parse_beacon_flags(f, &settings, &beacon_files_);
      if (!beacons) return usage_error(kDaemon, beacons.what());
      beacons_ = std::move(beacons).value();
      settings.peer_name = f.get("broker-name", "");
    }
    HostPort vault;
    bool vault_https = false;
    if (auto r = parse_vault_addr(f.get("vault-addr"), &vault, &vault_https); !r)
      return usage_error(kDaemon, r.what());
    // OpenBao is on this host: resolve it once, at start, here.
    auto vaddr = resolve(vault);
    if (!vaddr) return usage_error(kDaemon, "bad --vault-addr: " + vaddr.what());
    settings.upstream = vaddr->str();
    // README and --help promise plaintext to OpenBao on loopback only.
    if (!vault_https && !is_loopback(*vaddr) && !f.has("allow-plaintext-upstream-over-network"))
      return usage_error(
          kDaemon, "--vault-addr " + f.get("vault-addr") + " is http:// to " + vaddr->str() +
                       ", not a loopback address: wrappers' tokens and secrets would cross the "
                       "network in plaintext (use https://, OpenBao on this host's loopback, "
                       "or --allow-plaintext-upstream-over-network)");
    service_name_ = f.get("service-name", "cloudtaser-broker.cloudtaser-system.svc");
    const std::string cert = f.get("client-cert");
    if (auto pins = choose_pin_source(cert, "broker.pin", &flags_); !pins)
      return usage_error(kDaemon, pins.what());
    if (Result<void> st = choose_stream_mode(f, cert, vault_https); !st)
      return usage_error(kDaemon, st.what());
    if (f.has("stream-idle-timeout")) {
      const std::string v = f.get("stream-idle-timeout");
      auto s = v == "0" ? std::optional<unsigned>(0)
                        : parse_seconds(v, limits::kMaxStreamIdleTimeoutSec);
      if (!s) return usage_error(kDaemon, "bad --stream-idle-timeout (whole seconds, 0 to 86400)");
      settings.stream_idle_timeout_ms = *s * 1000;
    }
    settings.vault_health_path = f.get("vault-health-path", "/v1/sys/health");
    if (!valid_health_path(settings.vault_health_path))
      return usage_error(kDaemon, "bad --vault-health-path '" + settings.vault_health_path +
                                      "': an absolute path of printable ASCII without spaces, "
                                      "at most " +
                                      std::to_string(kMaxHealthPath) + " bytes");
    unsigned health_interval = kDefaultHealthIntervalSec;
    if (f.has("vault-health-interval")) {
      const std::string v = f.get("vault-health-interval");
      auto s = v == "0" ? std::optional<unsigned>(0) : parse_seconds(v, kMaxHealthIntervalSec);
      if (!s)
        return usage_error(kDaemon, "bad --vault-health-interval (whole seconds, 0 to " +
                                        std::to_string(kMaxHealthIntervalSec) + ")");
      health_interval = *s;
    }
    // In pass-through mode OpenBao speaks TLS, and so does the probe, but
    // only verified: against --vault-ca and the host named in --vault-addr.
    // Without --vault-ca it is not polled (state unknown), never unverified.
    const std::string vault_ca = f.get("vault-ca");
    if (!vault_ca.empty() && !vault_https)
      return usage_error(kDaemon, "--vault-ca verifies an https:// --vault-addr; " +
                                      f.get("vault-addr") + " is http://");
    if (vault_https && vault_ca.empty()) health_interval = 0;
    if (vault_https && !vault_ca.empty()) settings.vault_tls_name = vault.host;
    settings.vault_health_interval_ms = health_interval * 1000;
    settings.proxy_protocol = f.has("proxy-protocol");
    MaterialFiles files;
    files.cert = cert;
    files.key = f.get("client-key");
    files.ca = f.get("ca-cert");
    files.service_cert = service_cert_path_;
    files.service_key = service_key_path_;
    files.pin_file = flags_.pin_file;
    files.pins = flags_.pins;
    files.pin_flag = flags_.pin_flag;
    files.upstream_ca = vault_ca;
    files.beacon_ca = beacon_files_.beacon_ca;
    files.beacon_pins = beacon_files_.beacon_pins;
    files.beacon_cert = beacon_files_.beacon_cert;
    files.beacon_key = beacon_files_.beacon_key;
    MaterialStore store(std::move(files),
                        [this](const Material& m) { return validate_material(m); });
    if (auto r = parent_.open_executables(); !r) return usage_error(kDaemon, r.what());
    if (auto r = store.load(); !r) return usage_error(kDaemon, r.what());
    if (f.has("status-file")) {
      if (auto r = status_.open(f.get("status-file"), unix_seconds()); !r)
        return usage_error(kDaemon, "bad --status-file: " + r.what());
    }
    // Every start says it, after the start-up checks (which print one line each).
    if (f.has("allow-plaintext-streams") && service_cert_path_.empty() && !vault_https)
      LOG_WARN(
          "--allow-plaintext-streams: wrapper traffic crosses the broker in plaintext; "
          "the broker (and anyone who controls it) can read every secret");
    if (beacons_.empty())
      LOG_INFO("broker %s:%u (verifying %s), vault %s", broker_.host.c_str(), broker_.port,
               settings.peer_name.c_str(), settings.upstream.c_str());
    else
      LOG_INFO("beacon relay mode: rendezvous %s, beacons in order %s; vault %s",
               rendezvous_name(settings.rendezvous).c_str(), join(settings.beacons).c_str(),
               settings.upstream.c_str());
    // Which of the three stream modes is in force, every start.
    if (!service_cert_path_.empty())
      LOG_INFO("streams: wrapper TLS ends here with %s (for %s); OpenBao gets plaintext on %s",
               service_cert_path_.c_str(), service_name_.c_str(), settings.upstream.c_str());
    else if (vault_https)
      LOG_INFO("streams: pass-through, wrapper TLS goes unchanged to OpenBao at %s",
               settings.upstream.c_str());
    else
      LOG_INFO("streams: plaintext (--allow-plaintext-streams): the broker can read them");
    if (settings.proxy_protocol)
      LOG_INFO("OpenBao gets a PROXY protocol v2 header before every connection's first byte");
    if (settings.vault_health_interval_ms != 0 && vault_https)
      LOG_INFO("OpenBao health: GET %s every %u s over TLS, verifying %s with %s",
               settings.vault_health_path.c_str(), health_interval, settings.vault_tls_name.c_str(),
               vault_ca.c_str());
    else if (settings.vault_health_interval_ms != 0)
      LOG_INFO("OpenBao health: GET %s every %u s", settings.vault_health_path.c_str(),
               health_interval);
    else if (vault_https && vault_ca.empty())
      LOG_INFO(
          "OpenBao health: not polled (https:// --vault-addr without --vault-ca): add "
          "--vault-ca FILE, the CA that signed OpenBao's listener certificate, to poll it; "
          "brokers see its state as unknown");
    else
      LOG_INFO(
          "OpenBao health: not polled (--vault-health-interval 0); brokers see its state "
          "as unknown");
    const int rc = parent_.run(flags_, store);
    // A stopped bridge has no link, whatever the last status said.
    status_.links(0, unix_seconds());
    return rc;
  }

 private:
  Result<void> validate_material(const Material& m) const {
    auto ctx = TlsContext::create(TlsContext::Side::kClient, m, flags_.settings.peer_name);
    if (!ctx) return fail("--client-cert/--client-key/--ca-cert: " + ctx.what());
    if (!beacons_.empty()) {
      auto b = TlsContext::create_beacon(m);
      if (!b) return fail("--beacon-ca: " + b.what());
    }
    if (!m.service_cert_pem.empty()) {
      auto service = TlsContext::create_service(m.service_cert_pem, m.service_key_pem);
      if (!service) return fail("--service-cert/--service-key: " + service.what());
    }
    if (!m.upstream_ca_pem.empty()) {
      auto upstream = TlsContext::create_upstream(m.upstream_ca_pem);
      if (!upstream) return fail("--vault-ca: " + upstream.what());
    }
    // Wrappers verify that name: a certificate without it fails every
    // wrapper's handshake, which is better said at start.
    if (!m.service_cert_pem.empty() && !cert_has_name(m.service_cert_pem, service_name_))
      return fail(
          (service_cert_path_.empty() ? std::string("--service-cert") : service_cert_path_) +
          " does not carry the service name " + service_name_ +
          " (wrappers would refuse it; see --service-name)");
    return {};
  }

  // How wrapper streams stay unreadable to the broker (docs/privsep.md):
  //  - the bridge terminates their TLS (--service-cert/--service-key, or
  //    service.crt and service.key beside --client-cert) and speaks plaintext
  //    to an http:// --vault-addr on this host; or
  //  - an https:// --vault-addr: their TLS passes through to OpenBao.
  // Neither is refused unless --allow-plaintext-streams says so.
  Result<void> choose_stream_mode(const Flags& f, const std::string& cert_path, bool vault_https) {
    const bool c = f.has("service-cert"), k = f.has("service-key");
    if (c != k) return fail("--service-cert and --service-key go together");
    if (c) {
      service_cert_path_ = f.get("service-cert");
      service_key_path_ = f.get("service-key");
    } else {
      const size_t slash = cert_path.rfind('/');
      const std::string dir = slash == std::string::npos ? "." : cert_path.substr(0, slash);
      if (access((dir + "/service.crt").c_str(), F_OK) == 0 &&
          access((dir + "/service.key").c_str(), F_OK) == 0) {
        service_cert_path_ = dir + "/service.crt";
        service_key_path_ = dir + "/service.key";
      }
    }
    if (!service_cert_path_.empty() && vault_https)
      return fail(
          "--service-cert terminates wrapper TLS here, so --vault-addr must be http:// "
          "(OpenBao on this host); drop one of them");
    if (service_cert_path_.empty() && !vault_https && !f.has("allow-plaintext-streams"))
      return fail(
          "wrapper traffic would cross the broker in plaintext: give --service-cert and "
          "--service-key (or put service.crt and service.key beside --client-cert), use "
          "an https:// --vault-addr, or pass --allow-plaintext-streams");
    return {};
  }

  void on_status(const Status& s) noexcept override {
    status_.links(s.links_up, unix_seconds(), Replicas{s.replicas_expected, s.instances},
                  static_cast<UpstreamState>(s.upstream), s.certs);
  }

  void on_child_log_dropped(Supervisor::Which w, uint64_t lines) noexcept override {
    status_.child_log_dropped(w, lines);
  }

  bool on_extra_message(Supervisor::Which w, IpcMessage& m) noexcept override {
    if (w != Supervisor::kTls || m.type != Msg::kDialRequest) return false;
    // One dial at a time; a second request is a protocol breach. The body
    // names a beacon (its index in the settings' order) in beacon mode and
    // is empty otherwise.
    if (dialer_.busy()) return false;
    HostPort to = broker_;
    if (!beacons_.empty()) {
      if (m.body.size() != 1 || m.body[0] >= beacons_.size()) return false;
      to = beacons_[m.body[0]];
    } else if (!m.body.empty()) {
      return false;
    }
    // The name is looked up on every dial (the broker's Service address may
    // change), off the loop; one deadline covers the lookup and the connect.
    dialer_.start(to, [this](Result<UniqueFd> fd) {
      send_dial_result(parent_.channel(Supervisor::kTls), fd);
    });
    return true;
  }

  TimePoint tick(TimePoint now) noexcept override { return dialer_.tick(now); }

  void on_child_exited(Supervisor::Which w) noexcept override {
    if (w == Supervisor::kTls) dialer_.abandon();  // the asker is gone
    status_.child_exited(w);                       // its successor counts from 0
  }

  static constexpr const char* kDaemon = kProcs.daemon;
  CommonFlags flags_;
  DaemonParent parent_;
  HostPort broker_;
  std::string service_name_;
  std::string service_cert_path_, service_key_path_;  // empty: no service certificate
  MaterialFiles beacon_files_;                        // beacon mode: --beacon-ca and --beacon-pin
  std::vector<HostPort> beacons_;  // beacon mode: in the order of settings.beacons
  Dialer dialer_;
  StatusFile status_;
};

}  // namespace

int parent_main(int argc, char** argv) {
  BridgeParent p;
  return p.main(argc, argv);
}

}  // namespace ct::bridge
