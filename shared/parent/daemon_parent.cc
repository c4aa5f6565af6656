#include "shared/parent/daemon_parent.h"

#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>

#include "shared/base/log.h"
#include "shared/proc/spawn.h"
#include "shared/wire/limits.h"

namespace ct {

namespace {
constexpr size_t kMaxPemFile = 64 * 1024;
constexpr auto kStartupTimeout = std::chrono::seconds(10);

}  // namespace

bool DaemonParent::resolve_run_user(const std::string& name, std::string* err) {
  if (geteuid() != 0) {
    if (!name.empty()) {
      const passwd* pw = getpwnam(name.c_str());
      if (pw == nullptr || pw->pw_uid != geteuid()) {
        *err = "--user " + name + " needs root; running as uid " + std::to_string(geteuid());
        return false;
      }
    }
    return true;  // children keep our (unprivileged) user
  }
  const passwd* pw = nullptr;
  if (!name.empty()) {
    pw = getpwnam(name.c_str());
    if (pw == nullptr) return *err = "--user " + name + ": no such user", false;
  } else {
    pw = getpwnam("cloudtaser");
    if (pw == nullptr) pw = getpwnam("nobody");
    if (pw == nullptr)
      return *err = "running as root and neither user cloudtaser nor nobody exists (use --user)",
             false;
  }
  if (pw->pw_uid == 0 || pw->pw_gid == 0)
    return *err = "--user " + std::string(pw->pw_name) + " is root; children must not run as root",
           false;
  base_.drop_user = true;
  base_.uid = pw->pw_uid;
  base_.gid = pw->pw_gid;
  return true;
}

int DaemonParent::parse_common_flags(const Flags& f, const char* summary,
                                     std::initializer_list<const char*> required,
                                     const std::string& pin_flag) {
  if (f.has("help")) {
    std::fputs(f.usage(daemon_, summary).c_str(), stdout);
    return 0;
  }
  if (f.has("version")) {
    std::printf("%s %s\n", daemon_, CT_VERSION);
    return 0;
  }
  for (const char* req : required)
    if (!f.has(req)) return usage_error(std::string("missing required flag --") + req);
  log::Level level = log::kInfo;
  if (f.has("log-level") && !log::parse_level(f.get("log-level"), &level))
    return usage_error("bad --log-level '" + f.get("log-level") + "' (error, warn, info, debug)");
  log::init(daemon_, "parent", level);
  base_.log_level = static_cast<uint8_t>(level);
  if (f.has("drain-timeout")) {
    auto s = parse_seconds(f.get("drain-timeout"), 3600);
    if (!s) return usage_error("bad --drain-timeout (whole seconds, 1 to 3600)");
    base_.drain_timeout_ms = *s * 1000;
  }
  std::string err;
  if (!resolve_run_user(f.get("user"), &err)) return usage_error(err);
  pin_flag_ = pin_flag;
  insecure_no_pin_ = f.has("insecure-no-pin");
  pin_file_path_ = f.get(pin_flag + "-file");
  for (const std::string& p : f.all(pin_flag)) {
    auto pin = parse_pin(p);
    if (!pin)
      return usage_error("bad --" + pin_flag + " '" + p +
                         "' (expected sha256//<base64 of 32 bytes>)");
    pins_.push_back(*pin);
  }
  return -1;
}

bool DaemonParent::choose_pin_source(const std::string& cert_path, const char* default_name,
                                     std::string* err) {
  const bool given = !pins_.empty() || !pin_file_path_.empty();
  if (insecure_no_pin_) {
    if (given)
      return *err = "--insecure-no-pin contradicts --" + pin_flag_ + "/--" + pin_flag_ +
                    "-file: drop one",
             false;
    return true;
  }
  if (given) return true;
  const size_t slash = cert_path.rfind('/');
  const std::string dir = slash == std::string::npos ? "." : cert_path.substr(0, slash);
  const std::string path = dir + "/" + default_name;
  if (access(path.c_str(), F_OK) == 0) {
    pin_file_path_ = path;
    return true;
  }
  const std::string peer = pin_flag_.substr(0, pin_flag_.find('-'));
  *err = "no " + peer + " pin: give --" + pin_flag_ + " or --" + pin_flag_ + "-file, or put " +
         path + " (one sha256// pin per line, as cloudtaser-certs writes it); --insecure-no-pin " +
         "accepts any " + peer + " certificate the CA signed";
  return false;
}

int DaemonParent::usage_error(const std::string& msg) const {
  std::fprintf(stderr, "%s: %s\n", daemon_, msg.c_str());
  return kExitUsage;
}

bool DaemonParent::read_material(Material* m, std::string* err) const {
  if (!read_small_file(cert_path_, kMaxPemFile, &m->cert_pem, err) ||
      !read_small_file(key_path_, kMaxPemFile, &m->key_pem, err, /*private_key=*/true) ||
      !read_small_file(ca_path_, kMaxPemFile, &m->ca_pem, err) ||
      (!service_cert_path_.empty() &&
       !read_small_file(service_cert_path_, kMaxPemFile, &m->service_cert_pem, err)) ||
      (!service_key_path_.empty() &&
       !read_small_file(service_key_path_, kMaxPemFile, &m->service_key_pem, err,
                        /*private_key=*/true))) {
    wipe_material(*m);
    return false;
  }
  m->pins = pins_;
  if (!pin_file_path_.empty()) {
    std::string text;
    if (!read_small_file(pin_file_path_, kMaxPemFile, &text, err)) {
      wipe_material(*m);
      return false;
    }
    size_t line_no = 0, pos = 0, file_pins = 0;
    while (pos < text.size()) {
      size_t eol = text.find('\n', pos);
      if (eol == std::string::npos) eol = text.size();
      std::string line = text.substr(pos, eol - pos);
      pos = eol + 1;
      line_no++;
      while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
        line.pop_back();
      const size_t start = line.find_first_not_of(" \t");
      if (start == std::string::npos || line[start] == '#') continue;
      auto pin = parse_pin(line.substr(start));
      if (!pin) {
        *err = pin_file_path_ + ":" + std::to_string(line_no) +
               ": not a pin (expected sha256//<base64 of 32 bytes>)";
        wipe_material(*m);
        return false;
      }
      m->pins.push_back(*pin);
      file_pins++;
    }
    // A file of comments only (or one caught mid-rewrite) would otherwise
    // mean "no pin", i.e. any certificate the CA signed.
    if (file_pins == 0) {
      *err = pin_file_path_ + ": no pin in the file (one sha256//<base64 of 32 bytes> per line)";
      wipe_material(*m);
      return false;
    }
  }
  {
    std::vector<uint8_t> enc = encode_material(*m);
    const size_t size = enc.size();
    explicit_bzero(enc.data(), enc.size());
    if (size == 0 || size > limits::kMaxMaterial) {
      *err = "certificate, key, CA, pin and service files are " + std::to_string(size / 1024) +
             " KiB in all; at most " + std::to_string(limits::kMaxMaterial / 1024) +
             " KiB fit the control message to the TLS process";
      wipe_material(*m);
      return false;
    }
  }
  if (m->pins.size() > limits::kMaxPins) {
    *err = std::to_string(m->pins.size()) + " pins given (--" + pin_flag_ + " and " +
           (pin_file_path_.empty() ? std::string("no file") : pin_file_path_) + "); at most " +
           std::to_string(limits::kMaxPins);
    wipe_material(*m);
    return false;
  }
  return true;
}

std::string DaemonParent::files_stamp() const {
  std::string s;
  for (const std::string* p : {&cert_path_, &key_path_, &ca_path_, &service_cert_path_,
                               &service_key_path_, &pin_file_path_}) {
    if (p->empty()) continue;
    struct stat st {};
    if (stat(p->c_str(), &st) != 0) {
      s += "missing;";
      continue;
    }
    s += std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec) + ";";
  }
  return s;
}

void DaemonParent::watch_files(TimePoint now) noexcept {
  if (now < next_watch_) return;
  next_watch_ = now + std::chrono::seconds(2);
  if (files_stamp() == last_stamp_) return;
  // reload() records the new stamp once it applies (or refuses) the files; a
  // reload deferred while the TLS process restarts leaves it, so it is retried.
  if (!reload_deferred_) LOG_INFO("certificate, key, CA or pin file changed: reloading");
  reload();
}

bool DaemonParent::preload_material(std::string* err) {
  loaded_ = read_material(&good_, err) && validate_material(good_, err);
  return loaded_;
}

bool DaemonParent::open_executables(std::string* err) {
  return open_self_exe(&tls_exe_, err) && open_forward_exe(daemon_, &fwd_exe_, &fwd_exe_path_, err);
}

int DaemonParent::run() {
  std::string err;
  if (!loaded_ && !preload_material(&err)) return usage_error(err);
  if (!fwd_exe_ && !open_executables(&err)) return usage_error(err);
  if (insecure_no_pin_)
    LOG_WARN("--insecure-no-pin: any %s certificate the CA signed is accepted; pin the %s's key",
             pin_flag_.substr(0, pin_flag_.find('-')).c_str(),
             pin_flag_.substr(0, pin_flag_.find('-')).c_str());
  // The parent holds every private key for the daemon's life: no core dump,
  // and no ptrace or /proc/<pid>/mem by processes of the same user.
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    std::fprintf(stderr, "%s: prctl(PR_SET_DUMPABLE, 0): %s\n", daemon_, std::strerror(errno));
    return 1;
  }
  uint64_t fds_from = 0, fds_to = 0;
  if (!raise_fd_limit(&fds_from, &fds_to, &err))
    LOG_WARN("cannot raise the file descriptor limit (%s): streams may fail beyond %llu fds",
             err.c_str(), static_cast<unsigned long long>(fds_from));
  else if (fds_to != fds_from)
    LOG_INFO("file descriptor limit raised from %llu to %llu",
             static_cast<unsigned long long>(fds_from), static_cast<unsigned long long>(fds_to));
  signal(SIGPIPE, SIG_IGN);
  loop_.watch_signals({SIGCHLD, SIGTERM, SIGINT, SIGHUP}, [this](int sig) {
    if (sig == SIGCHLD)
      sup_->on_sigchld();
    else if (sig == SIGHUP)
      reload();
    else
      begin_drain();
  });
  sup_ =
      std::make_unique<Supervisor>(loop_, *this, daemon_, std::move(tls_exe_), std::move(fwd_exe_),
                                   procs_.parent.from_tls, procs_.parent.from_forward);
  startup_deadline_ = Clock::now() + kStartupTimeout;
  last_stamp_ = files_stamp();
  next_watch_ = Clock::now() + std::chrono::seconds(2);
  if (!sup_->start()) {
    sup_->signal_all(SIGKILL);
    return usage_error("cannot start child processes");
  }
  while (true) {
    const auto now = Clock::now();
    if (phase_ == Phase::kStarting && now >= startup_deadline_) {
      fatal_error_ = "TLS process did not become ready in time";
      break;
    }
    if (phase_ == Phase::kDraining && (!sup_->any_alive() || now >= drain_deadline_)) break;
    if (!fatal_error_.empty()) break;
    sup_->tick(now);
    extra_tick(now);
    if (phase_ == Phase::kRunning) watch_files(now);
    // Whatever this iteration (and the last batch) sent: failed channels end
    // their child, queued output arms EPOLLOUT.
    sup_->after_batch();
    TimePoint dl =
        std::min({sup_->next_deadline(), extra_deadline(),
                  phase_ == Phase::kStarting ? startup_deadline_ : TimePoint::max(),
                  phase_ == Phase::kRunning ? next_watch_ : TimePoint::max(), drain_deadline_});
    loop_.run_once(dl);
  }
  sup_->set_stopping();
  sup_->signal_all(SIGKILL);
  wipe_material(good_);
  wipe_material(candidate_);
  if (!fatal_error_.empty()) {
    std::fprintf(stderr, "%s: %s\n", daemon_, fatal_error_.c_str());
    return kExitUsage;
  }
  LOG_INFO("exiting");
  return exit_code_;
}

void DaemonParent::on_child_started(Supervisor::Which w, IpcChannel& ch) noexcept {
  const auto s = encode_settings(settings_for(w));
  ch.send(Msg::kSettings, s);
  if (w == Supervisor::kTls) {
    send_material(ch, good_);
    material_sent_to_current_tls_ = true;
    candidate_pending_ = false;  // a new process only ever sees the good material
  }
  send_extras(w, ch);
  // A restarted forwarding process serves the latest figures at once.
  if (w == Supervisor::kForward && !last_stats_.empty()) ch.send(Msg::kStats, last_stats_);
  if (phase_ == Phase::kDraining) ch.send(Msg::kDrain, Bytes{});
}

void DaemonParent::on_child_message(Supervisor::Which w, IpcMessage& m) noexcept {
  switch (m.type) {
    case Msg::kReady:
      if (w == Supervisor::kTls && candidate_pending_) {
        // The TLS process accepted the reloaded material: it becomes the good one.
        wipe_material(good_);
        good_ = std::move(candidate_);
        candidate_ = Material{};
        candidate_pending_ = false;
        LOG_INFO("reload: new certificate material in service");
        return;
      }
      if (w == Supervisor::kTls) tls_ready_ = true;
      if (w == Supervisor::kTls && phase_ == Phase::kStarting) {
        phase_ = Phase::kRunning;
        LOG_INFO("ready");
        sd_notify("READY=1\nSTATUS=started; no link yet");
      } else if (w == Supervisor::kTls && reload_deferred_) {
        LOG_INFO("TLS process ready again: applying the deferred reload");
        reload();
      }
      return;
    case Msg::kMaterialError: {
      const std::string why(m.body.begin(), m.body.end());
      if (phase_ == Phase::kStarting) {
        fatal_error_ = why;
        return;
      }
      if (candidate_pending_) {
        LOG_WARN("reload refused, keeping the material in service: %s", why.c_str());
        wipe_material(candidate_);
        candidate_pending_ = false;
        return;
      }
      // The good material was refused by a restarted TLS process: impossible.
      sup_->kill_child(w, "refused material it accepted before: " + why);
      return;
    }
    case Msg::kStatus: {
      auto s = decode_status(m.body);
      if (!s) return sup_->kill_child(w, "malformed STATUS (or a control character in its text)");
      return on_status(*s);
    }
    case Msg::kStats:
      // Checked here, then handed to the forwarding process, which serves them.
      if (w != Supervisor::kTls || !check_stats(m.body))
        return sup_->kill_child(w, "malformed STATS");
      last_stats_ = m.body;
      if (IpcChannel* ch = sup_->channel(Supervisor::kForward)) ch->send(Msg::kStats, m.body);
      return;
    default:
      if (!on_extra_message(w, m))
        sup_->kill_child(w, std::string("message not allowed: ") + msg_name(m.type));
  }
}

void DaemonParent::on_status(const Status& s) noexcept {
  LOG_INFO("status: %s", s.text.c_str());
  sd_notify("STATUS=" + s.text);
}

void DaemonParent::send_material(IpcChannel& ch, const Material& m) noexcept {
  std::vector<uint8_t> enc = encode_material(m);
  ch.send(Msg::kMaterial, enc);  // copied into the queue, which wipes it once sent
  explicit_bzero(enc.data(), enc.size());
}

void DaemonParent::tls_out_of_service() noexcept {
  if (last_stats_.empty()) return;  // no figures (the bridge): nothing to correct
  std::vector<uint8_t> corrected = stats_without_tls(last_stats_);
  if (corrected.empty()) return;
  last_stats_ = std::move(corrected);
  if (IpcChannel* ch = sup_->channel(Supervisor::kForward)) ch->send(Msg::kStats, last_stats_);
}

void DaemonParent::on_child_answering(Supervisor::Which w, bool answering) noexcept {
  if (w == Supervisor::kTls && !answering) tls_out_of_service();
  // Answering again: its next STATS (every second) brings the real figures.
}

void DaemonParent::on_child_exited(Supervisor::Which w, int status) noexcept {
  if (w == Supervisor::kTls) {
    candidate_pending_ = false;
    tls_ready_ = false;
    tls_out_of_service();
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == kExitVersionMismatch && fatal_error_.empty()) {
    // Its own line says which versions; this one says which file to replace.
    fatal_error_ = std::string("the ") + Supervisor::name(w) + " process refused to run: " +
                   (w == Supervisor::kForward ? fwd_exe_path_ : std::string("/proc/self/exe")) +
                   " is not from " + daemon_ + " " + CT_VERSION +
                   " (install the daemon and its helper from one package)";
    return;
  }
  if (phase_ == Phase::kStarting && w == Supervisor::kTls && fatal_error_.empty())
    fatal_error_ = "TLS process exited during start-up";
}

void DaemonParent::reload() noexcept {
  if (phase_ != Phase::kRunning) return;
  const std::string stamp = files_stamp();
  IpcChannel* ch = sup_->channel(Supervisor::kTls);
  if (ch == nullptr || !tls_ready_) {
    // Kept, not lost: applied when the restarted TLS process is ready. The
    // stamp stays old so that the watcher also tries again.
    if (!reload_deferred_) LOG_WARN("reload deferred: TLS process is restarting");
    reload_deferred_ = true;
    return;
  }
  reload_deferred_ = false;
  last_stamp_ = stamp;  // what this reload reads; the watcher fires on the next change
  std::string err;
  Material m;
  if (!read_material(&m, &err) || !validate_material(m, &err)) {
    wipe_material(m);
    LOG_WARN("reload refused, keeping the material in service: %s", err.c_str());
    return;
  }
  wipe_material(candidate_);
  candidate_ = std::move(m);
  candidate_pending_ = true;
  send_material(*ch, candidate_);
  LOG_INFO("reload: material sent to the TLS process");
}

void DaemonParent::begin_drain() noexcept {
  if (phase_ == Phase::kDraining) return;
  if (phase_ == Phase::kStarting) {
    exit_code_ = 0;
    drain_deadline_ = Clock::now();
    phase_ = Phase::kDraining;
    return;
  }
  phase_ = Phase::kDraining;
  sd_notify("STOPPING=1");
  LOG_INFO("draining: no new streams, up to %u s for the open ones", base_.drain_timeout_ms / 1000);
  sup_->set_stopping();
  on_drain();
  drain_deadline_ = Clock::now() + std::chrono::milliseconds(base_.drain_timeout_ms);
  // The forwarding process first: the broker's readiness turns false before the
  // TLS process sends GOAWAY to the bridges.
  for (auto w : {Supervisor::kForward, Supervisor::kTls})
    if (IpcChannel* ch = sup_->channel(w)) ch->send(Msg::kDrain, Bytes{});
}

}  // namespace ct
