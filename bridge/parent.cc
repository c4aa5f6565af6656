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
#include "shared/base/log.h"
#include "shared/base/unique_fd.h"
#include "shared/os/flags.h"
#include "shared/os/net.h"
#include "shared/os/resolver.h"
#include "shared/parent/daemon_parent.h"
#include "shared/tls/context.h"
#include "shared/wire/limits.h"

namespace ct::bridge {

namespace {

constexpr auto kDialTimeout = std::chrono::seconds(10);

const char* kSummary =
    "vault-bridge: runs beside OpenBao, dials OUT to cloudtaser-broker over mutual TLS 1.3\n"
    "(pinned keys), and carries each wrapper connection the broker receives to --vault-addr.\n"
    "It opens no listening port, so the OpenBao host can deny all inbound traffic.";

std::vector<FlagSpec> flag_specs() {
  return {
      {"broker-address", "HOST:PORT",
       "the broker's bridge endpoint, e.g. broker.prod.example.com:443"},
      {"vault-addr", "URL", "OpenBao on this host: http://127.0.0.1:8200 or https://..."},
      {"client-cert", "FILE", "PEM certificate chain presented to the broker"},
      {"client-key", "FILE", "PEM private key of --client-cert (unencrypted)"},
      {"ca-cert", "FILE", "PEM CA certificate(s) that the broker's certificate must chain to"},
      {"broker-pin-file", "FILE",
       "more pins, one sha256//BASE64 per line, at most 16 in all (re-read on SIGHUP and when it "
       "changes; a file without a pin is refused; default: broker.pin beside --client-cert)"},
      {"broker-pin", "sha256//BASE64",
       "accept only a broker whose certificate key hashes to this pin (curl's form)", true},
      {"insecure-no-pin", "",
       "accept any broker certificate the CA signed (no pin); without it the bridge refuses to "
       "start when neither --broker-pin, --broker-pin-file nor broker.pin beside --client-cert "
       "gives a pin"},
      {"service-cert", "FILE",
       "PEM certificate wrappers trust (SAN: the broker's in-cluster name); their TLS ends "
       "here and OpenBao gets plaintext on loopback (default: service.crt beside --client-cert)"},
      {"service-key", "FILE", "PEM private key of --service-cert (default: service.key beside it)"},
      {"service-name", "NAME",
       "the name wrappers reach the broker by, which --service-cert must carry (default "
       "cloudtaser-broker.cloudtaser-system.svc)"},
      {"allow-plaintext-upstream-over-network", "",
       "allow an http:// --vault-addr that is not a loopback address (wrappers' tokens and "
       "secrets then cross that network in plaintext)"},
      {"allow-plaintext-streams", "",
       "carry wrapper streams unchanged with an http:// --vault-addr and no service certificate "
       "(the broker can then read them; for tests only)"},
      {"broker-name", "NAME",
       "name (or IP) the broker's certificate must carry (default: host of --broker-address)"},
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
      {"status-file", "PATH",
       "keep the link state in PATH (Prometheus text format, written atomically through "
       "PATH.tmp) for node_exporter's textfile collector; name it *.prom"},
      {"user", "NAME",
       "when started as root, the user the child processes run as (default: cloudtaser if it "
       "exists, else nobody)"},
      {"log-level", "LEVEL", "error, warn, info (default) or debug"},
      {"version", "", "print the version and exit"},
      {"help", "", "print this help and exit"},
  };
}

// "http://host:port[/]" or "https://host:port[/]" -> host:port. The scheme
// only says what the wrappers speak; the bridge passes bytes unchanged.
bool parse_vault_addr(const std::string& url, HostPort* out, bool* https, std::string* err) {
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
    *err = "bad --vault-addr '" + url + "': expected http://HOST:PORT or https://HOST:PORT";
    return false;
  }
  if (!rest.empty() && rest.back() == '/') rest.pop_back();
  if (rest.find('/') != std::string::npos || rest.find('?') != std::string::npos ||
      rest.find('@') != std::string::npos) {
    *err = "bad --vault-addr '" + url + "': only scheme, host and port are allowed";
    return false;
  }
  const bool has_port = rest.rfind(':') != std::string::npos &&
                        (rest.front() != '[' || rest.rfind(']') < rest.rfind(':'));
  if (!has_port) rest += ":" + std::to_string(def_port);
  std::string e;
  auto hp = parse_host_port(rest, &e);
  if (!hp) {
    *err = "bad --vault-addr '" + url + "': " + e;
    return false;
  }
  *out = *hp;
  return true;
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

double unix_seconds() {
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                      std::chrono::system_clock::now().time_since_epoch())
                      .count();
  return static_cast<double>(ms) / 1000.0;
}

// Log lines each process dropped (its stderr full), by Supervisor::Which and
// then the parent's own: counters over the bridge's life.
struct LogDropped {
  uint64_t tls = 0, forward = 0, parent = 0;
  bool operator==(const LogDropped&) const = default;
};

// The textfile-collector file: the link state, and when it last changed.
std::string status_text(uint32_t links_up, double changed, double started,
                        const LogDropped& dropped) {
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
  return std::string(buf, std::min(sizeof buf - 1, static_cast<size_t>(n)));
}

// Writes `text` to path atomically: path.tmp, fsync, rename. Mode 0644 whatever
// the umask (the unit's is 0077): the collector runs as another user, and the
// file holds no secret. Blocking, but a few hundred bytes on a local disk.
bool write_atomically(const std::string& path, const std::string& text, std::string* err) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
  if (fd < 0) {
    *err = "cannot write " + tmp + ": " + std::strerror(errno);
    return false;
  }
  UniqueFd f(fd);
  size_t off = 0;
  while (off < text.size()) {
    const ssize_t w = ::write(f.get(), text.data() + off, text.size() - off);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      *err = "cannot write " + tmp + ": " + std::strerror(w < 0 ? errno : ENOSPC);
      ::unlink(tmp.c_str());
      return false;
    }
    off += static_cast<size_t>(w);
  }
  if (::fchmod(f.get(), 0644) != 0 || ::fsync(f.get()) != 0) {
    *err = "cannot write " + tmp + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  f.reset();
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    *err = "cannot rename " + tmp + " to " + path + ": " + std::strerror(errno);
    ::unlink(tmp.c_str());
    return false;
  }
  return true;
}

class BridgeParent final : public DaemonParent {
 public:
  BridgeParent() : DaemonParent(kProcs), resolver_(loop_) {}

  int main(int argc, char** argv) {
    Flags f(flag_specs());
    std::string err;
    if (!f.parse(argc, argv, &err)) return usage_error(err);
    const int common = parse_common_flags(
        f, kSummary, {"broker-address", "vault-addr", "client-cert", "client-key", "ca-cert"},
        "broker-pin");
    if (common >= 0) return common;
    auto broker = parse_host_port(f.get("broker-address"), &err);
    if (!broker)
      return usage_error("bad --broker-address '" + f.get("broker-address") + "': " + err);
    broker_ = *broker;
    base_.peer_name = f.get("broker-name", broker_.host);
    HostPort vault;
    bool vault_https = false;
    if (!parse_vault_addr(f.get("vault-addr"), &vault, &vault_https, &err)) return usage_error(err);
    // OpenBao is on this host: resolve it once, at start, here.
    auto vaddr = resolve(vault, &err);
    if (!vaddr) return usage_error("bad --vault-addr: " + err);
    base_.upstream = vaddr->str();
    // README and --help promise plaintext to OpenBao on loopback only.
    if (!vault_https && !is_loopback(*vaddr) && !f.has("allow-plaintext-upstream-over-network"))
      return usage_error("--vault-addr " + f.get("vault-addr") + " is http:// to " + vaddr->str() +
                         ", not a loopback address: wrappers' tokens and secrets would cross the "
                         "network in plaintext (use https://, OpenBao on this host's loopback, "
                         "or --allow-plaintext-upstream-over-network)");
    service_name_ = f.get("service-name", "cloudtaser-broker.cloudtaser-system.svc");
    cert_path_ = f.get("client-cert");
    key_path_ = f.get("client-key");
    ca_path_ = f.get("ca-cert");
    if (!choose_pin_source(cert_path_, "broker.pin", &err)) return usage_error(err);
    if (!choose_stream_mode(f, vault_https, &err)) return usage_error(err);
    if (f.has("stream-idle-timeout")) {
      const std::string v = f.get("stream-idle-timeout");
      auto s = v == "0" ? std::optional<unsigned>(0)
                        : parse_seconds(v, limits::kMaxStreamIdleTimeoutSec);
      if (!s) return usage_error("bad --stream-idle-timeout (whole seconds, 0 to 86400)");
      base_.stream_idle_timeout_ms = *s * 1000;
    }
    if (f.has("memory-budget")) {
      auto m = parse_seconds(f.get("memory-budget"), limits::kMaxMemoryBudgetMiB);
      if (!m) return usage_error("bad --memory-budget (whole MiB, 1 to 65536)");
      base_.memory_budget_mib = *m;
    }
    if (!open_executables(&err) || !preload_material(&err)) return usage_error(err);
    if (f.has("status-file")) {
      // Written once now (link down): an unwritable path is a start-up error.
      status_path_ = f.get("status-file");
      if (status_path_.empty()) return usage_error("bad --status-file: empty path");
      started_ = changed_ = unix_seconds();
      if (!write_atomically(status_path_, status_text(0, changed_, started_, dropped_), &err))
        return usage_error("bad --status-file: " + err);
    }
    // Every start says it, after the start-up checks (which print one line each).
    if (f.has("allow-plaintext-streams") && service_cert_path_.empty() && !vault_https)
      LOG_WARN(
          "--allow-plaintext-streams: wrapper traffic crosses the broker in plaintext; "
          "the broker (and anyone who controls it) can read every secret");
    LOG_INFO("broker %s:%u (verifying %s), vault %s", broker_.host.c_str(), broker_.port,
             base_.peer_name.c_str(), base_.upstream.c_str());
    // Which of the three stream modes is in force, every start.
    if (!service_cert_path_.empty())
      LOG_INFO("streams: wrapper TLS ends here with %s (for %s); OpenBao gets plaintext on %s",
               service_cert_path_.c_str(), service_name_.c_str(), base_.upstream.c_str());
    else if (vault_https)
      LOG_INFO("streams: pass-through, wrapper TLS goes unchanged to OpenBao at %s",
               base_.upstream.c_str());
    else
      LOG_INFO("streams: plaintext (--allow-plaintext-streams): the broker can read them");
    const int rc = run();
    // A stopped bridge has no link, whatever the last status said.
    if (!status_path_.empty() && links_up_ != 0) write_status(0);
    return rc;
  }

 private:
  struct Dial : Loop::Handler {
    BridgeParent* self = nullptr;
    UniqueFd fd;
    TimePoint deadline = TimePoint::max();
    std::string target;
    void on_io(uint32_t) noexcept override { self->dial_done(); }
  };

  bool validate_material(const Material& m, std::string* err) const override {
    auto ctx = TlsContext::create(TlsContext::Side::kClient, m, base_.peer_name, err);
    if (!ctx) {
      *err = "--client-cert/--client-key/--ca-cert: " + *err;
      return false;
    }
    if (!m.service_cert_pem.empty() &&
        !TlsContext::create_service(m.service_cert_pem, m.service_key_pem, err)) {
      *err = "--service-cert/--service-key: " + *err;
      return false;
    }
    // Wrappers verify that name: a certificate without it fails every
    // wrapper's handshake, which is better said at start.
    if (!m.service_cert_pem.empty() && !cert_has_name(m.service_cert_pem, service_name_)) {
      *err = (service_cert_path_.empty() ? std::string("--service-cert") : service_cert_path_) +
             " does not carry the service name " + service_name_ +
             " (wrappers would refuse it; see --service-name)";
      return false;
    }
    return true;
  }

  // How wrapper streams stay unreadable to the broker (docs/privsep.md):
  //  - the bridge terminates their TLS (--service-cert/--service-key, or
  //    service.crt and service.key beside --client-cert) and speaks plaintext
  //    to an http:// --vault-addr on this host; or
  //  - an https:// --vault-addr: their TLS passes through to OpenBao.
  // Neither is refused unless --allow-plaintext-streams says so.
  bool choose_stream_mode(const Flags& f, bool vault_https, std::string* err) {
    const bool c = f.has("service-cert"), k = f.has("service-key");
    if (c != k) return *err = "--service-cert and --service-key go together", false;
    if (c) {
      service_cert_path_ = f.get("service-cert");
      service_key_path_ = f.get("service-key");
    } else {
      const size_t slash = cert_path_.rfind('/');
      const std::string dir = slash == std::string::npos ? "." : cert_path_.substr(0, slash);
      if (access((dir + "/service.crt").c_str(), F_OK) == 0 &&
          access((dir + "/service.key").c_str(), F_OK) == 0) {
        service_cert_path_ = dir + "/service.crt";
        service_key_path_ = dir + "/service.key";
      }
    }
    if (!service_cert_path_.empty() && vault_https)
      return *err =
                 "--service-cert terminates wrapper TLS here, so --vault-addr must be http:// "
                 "(OpenBao on this host); drop one of them",
             false;
    if (service_cert_path_.empty() && !vault_https && !f.has("allow-plaintext-streams"))
      return *err =
                 "wrapper traffic would cross the broker in plaintext: give --service-cert and "
                 "--service-key (or put service.crt and service.key beside --client-cert), use "
                 "an https:// --vault-addr, or pass --allow-plaintext-streams",
             false;
    return true;
  }

  ProcSettings settings_for(Supervisor::Which) override { return base_; }

  void on_status(const Status& s) noexcept override {
    DaemonParent::on_status(s);  // the log line and sd_notify STATUS=
    if (!status_path_.empty() && s.links_up != links_up_) write_status(s.links_up);
  }

  // Each heartbeat answer brings a child's count; the file is rewritten only
  // when a count moved, so a full stderr costs at most a write per second
  // per process.
  void on_child_log_dropped(Supervisor::Which w, uint64_t lines) noexcept override {
    const size_t i = w == Supervisor::kTls ? 0 : 1;
    // A restarted child counts from 0 again: the counter goes on from the
    // total its predecessors reached.
    if (lines < child_dropped_last_[i]) child_dropped_last_[i] = 0;
    uint64_t& total = i == 0 ? dropped_.tls : dropped_.forward;
    const LogDropped before = dropped_;
    total += lines - child_dropped_last_[i];
    child_dropped_last_[i] = lines;
    dropped_.parent = log::dropped_lines();
    if (!status_path_.empty() && !(dropped_ == before)) rewrite_status();
  }

  void write_status(uint32_t links_up) noexcept {
    links_up_ = links_up;
    changed_ = unix_seconds();
    rewrite_status();
  }

  void rewrite_status() noexcept {
    dropped_.parent = log::dropped_lines();
    std::string err;
    if (write_atomically(status_path_, status_text(links_up_, changed_, started_, dropped_),
                         &err)) {
      status_failing_ = false;
    } else if (!status_failing_) {  // logged once until a write succeeds again
      status_failing_ = true;
      LOG_WARN("--status-file: %s", err.c_str());
    }
  }

  bool on_extra_message(Supervisor::Which w, IpcMessage& m) noexcept override {
    if (w != Supervisor::kTls || m.type != Msg::kDialRequest) return false;
    // One dial at a time; a second request is a protocol breach.
    if (dial_.fd || resolver_.busy()) return false;
    start_dial();
    return true;
  }

  // The name is looked up on every dial (the broker's Service address may
  // change), off the loop; one deadline covers the lookup and the connect.
  void start_dial() noexcept {
    dial_.deadline = Clock::now() + kDialTimeout;
    if (auto addr = numeric_addr(broker_)) return connect_to(*addr);
    resolver_.start(broker_, [this](std::optional<SockAddr> addr, const std::string& err) {
      if (!addr) return dial_failed(err);
      connect_to(*addr);
    });
  }

  void connect_to(const SockAddr& addr) noexcept {
    bool in_progress = false;
    int e = 0;
    dial_.self = this;
    dial_.target = addr.str();
    LOG_DEBUG("dialling %s", dial_.target.c_str());
    dial_.fd = connect_tcp(addr, &in_progress, &e);
    if (!dial_.fd) return dial_failed("connect to " + dial_.target + ": " + std::strerror(e));
    loop_.add(dial_.fd.get(), EPOLLOUT, &dial_);
  }

  void dial_done() noexcept {
    loop_.del(dial_.fd.get());
    dial_.deadline = TimePoint::max();
    UniqueFd fd = std::move(dial_.fd);
    const int e = socket_error(fd.get());
    if (e != 0) return dial_failed("connect to " + dial_.target + ": " + std::strerror(e));
    LOG_DEBUG("connected to %s", dial_.target.c_str());
    if (IpcChannel* ch = sup_->channel(Supervisor::kTls)) ch->send(Msg::kDialed, {}, fd.get());
  }

  // Forgets the dial in flight, whichever step it is at (lookup or connect).
  void abandon_dial() noexcept {
    resolver_.cancel();
    if (dial_.fd) loop_.del(dial_.fd.get());
    dial_.fd.reset();
    dial_.deadline = TimePoint::max();
  }

  void dial_failed(const std::string& why) noexcept {
    abandon_dial();
    if (IpcChannel* ch = sup_->channel(Supervisor::kTls)) ch->send(Msg::kDialFailed, why);
  }

  TimePoint extra_deadline() const override { return dial_.deadline; }
  void extra_tick(TimePoint now) noexcept override {
    if (now < dial_.deadline) return;
    if (resolver_.busy())
      return dial_failed("cannot resolve " + broker_.host + ": no answer within " +
                         std::to_string(std::chrono::seconds(kDialTimeout).count()) + " s");
    if (dial_.fd) dial_failed("connect to " + dial_.target + ": timed out");
  }

  void on_child_exited(Supervisor::Which w, int status) noexcept override {
    if (w == Supervisor::kTls) abandon_dial();               // the asker is gone
    child_dropped_last_[w == Supervisor::kTls ? 0 : 1] = 0;  // its successor counts from 0
    DaemonParent::on_child_exited(w, status);
  }

  HostPort broker_;
  std::string service_name_;
  Dial dial_;
  Resolver resolver_;
  std::string status_path_;  // empty: no --status-file
  uint32_t links_up_ = 0;
  double started_ = 0, changed_ = 0;
  bool status_failing_ = false;
  LogDropped dropped_;
  uint64_t child_dropped_last_[2] = {0, 0};  // the current tls, forward process's own count
};

}  // namespace

int parent_main(int argc, char** argv) {
  BridgeParent p;
  return p.main(argc, argv);
}

}  // namespace ct::bridge
