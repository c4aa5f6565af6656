// The bridge's parent: flags, certificate files, name resolution and the
// outbound connections to the broker (dialled here, handed to the TLS process
// as connected fds), and supervision of the TLS and forwarding processes.
// Nothing from the network is ever parsed here.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>

#include "bridge/bridge.h"
#include "shared/daemon_parent.h"
#include "shared/flags.h"
#include "shared/log.h"
#include "shared/net.h"
#include "shared/tls_context.h"

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
      {"broker-pin", "sha256//BASE64",
       "accept only a broker whose certificate key hashes to this pin (curl's form)", true},
      {"broker-name", "NAME",
       "name (or IP) the broker's certificate must carry (default: host of --broker-address)"},
      {"drain-timeout", "SECONDS",
       "on SIGTERM, how long open streams may take to finish (default 30)"},
      {"log-level", "LEVEL", "error, warn, info (default) or debug"},
      {"version", "", "print the version and exit"},
      {"help", "", "print this help and exit"},
  };
}

// "http://host:port[/]" or "https://host:port[/]" -> host:port. The scheme
// only says what the wrappers speak; the bridge passes bytes unchanged.
bool parse_vault_addr(const std::string& url, HostPort* out, std::string* err) {
  std::string rest;
  uint16_t def_port = 0;
  if (url.rfind("http://", 0) == 0) {
    rest = url.substr(7);
    def_port = 80;
  } else if (url.rfind("https://", 0) == 0) {
    rest = url.substr(8);
    def_port = 443;
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

class BridgeParent final : public DaemonParent {
 public:
  BridgeParent() : DaemonParent("vault-bridge") {}

  int main(int argc, char** argv) {
    Flags f(flag_specs());
    std::string err;
    if (!f.parse(argc, argv, &err)) return usage_error(err);
    if (f.has("help")) {
      std::fputs(f.usage("vault-bridge", kSummary).c_str(), stdout);
      return 0;
    }
    if (f.has("version")) {
      std::printf("vault-bridge %s\n", CT_VERSION);
      return 0;
    }
    for (const char* req : {"broker-address", "vault-addr", "client-cert", "client-key", "ca-cert"})
      if (!f.has(req)) return usage_error(std::string("missing required flag --") + req);
    log::Level level = log::kInfo;
    if (f.has("log-level") && !log::parse_level(f.get("log-level"), &level))
      return usage_error("bad --log-level '" + f.get("log-level") + "' (error, warn, info, debug)");
    log::init("vault-bridge", "parent", level);
    base_.log_level = static_cast<uint8_t>(level);
    if (f.has("drain-timeout")) {
      auto s = parse_seconds(f.get("drain-timeout"), 3600);
      if (!s) return usage_error("bad --drain-timeout (whole seconds, 1 to 3600)");
      base_.drain_timeout_ms = *s * 1000;
    }
    for (const std::string& p : f.all("broker-pin")) {
      auto pin = parse_pin(p);
      if (!pin)
        return usage_error("bad --broker-pin '" + p + "' (expected sha256//<base64 of 32 bytes>)");
      pins_.push_back(*pin);
    }
    auto broker = parse_host_port(f.get("broker-address"), &err);
    if (!broker)
      return usage_error("bad --broker-address '" + f.get("broker-address") + "': " + err);
    broker_ = *broker;
    base_.peer_name = f.get("broker-name", broker_.host);
    HostPort vault;
    if (!parse_vault_addr(f.get("vault-addr"), &vault, &err)) return usage_error(err);
    // OpenBao is on this host: resolve it once, at start, here.
    auto vaddr = resolve(vault, &err);
    if (!vaddr) return usage_error("bad --vault-addr: " + err);
    base_.upstream = vaddr->str();
    cert_path_ = f.get("client-cert");
    key_path_ = f.get("client-key");
    ca_path_ = f.get("ca-cert");
    if (!preload_material(&err)) return usage_error(err);
    LOG_INFO("broker %s:%u (verifying %s), vault %s", broker_.host.c_str(), broker_.port,
             base_.peer_name.c_str(), base_.upstream.c_str());
    return run();
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
    if (!ctx) *err = "--client-cert/--client-key/--ca-cert: " + *err;
    return ctx != nullptr;
  }

  ProcSettings settings_for(Supervisor::Which) override { return base_; }

  bool on_extra_message(Supervisor::Which w, IpcMessage& m) noexcept override {
    if (w != Supervisor::kTls || m.type != Msg::kDialRequest) return false;
    if (dial_.fd) return false;  // one dial at a time; a second request is a protocol breach
    start_dial();
    return true;
  }

  void start_dial() noexcept {
    std::string err;
    auto addr = resolve(broker_, &err);
    if (!addr) return dial_failed(err);
    bool in_progress = false;
    int e = 0;
    dial_.self = this;
    dial_.target = addr->str();
    dial_.fd = connect_tcp(*addr, &in_progress, &e);
    if (!dial_.fd) return dial_failed("connect to " + dial_.target + ": " + std::strerror(e));
    dial_.deadline = Clock::now() + kDialTimeout;
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

  void dial_failed(const std::string& why) noexcept {
    if (IpcChannel* ch = sup_->channel(Supervisor::kTls)) ch->send(Msg::kDialFailed, why);
  }

  TimePoint extra_deadline() const override { return dial_.deadline; }
  void extra_tick(TimePoint now) noexcept override {
    if (dial_.fd && now >= dial_.deadline) {
      loop_.del(dial_.fd.get());
      dial_.fd.reset();
      dial_.deadline = TimePoint::max();
      dial_failed("connect to " + dial_.target + ": timed out");
    }
  }

  void on_child_exited(Supervisor::Which w) noexcept override {
    if (w == Supervisor::kTls && dial_.fd) {  // the asker is gone
      loop_.del(dial_.fd.get());
      dial_.fd.reset();
      dial_.deadline = TimePoint::max();
    }
    DaemonParent::on_child_exited(w);
  }

  HostPort broker_;
  Dial dial_;
};

}  // namespace

int parent_main(int argc, char** argv) {
  BridgeParent p;
  return p.main(argc, argv);
}

}  // namespace ct::bridge
