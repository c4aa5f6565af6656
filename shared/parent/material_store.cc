#include "shared/parent/material_store.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "shared/base/unique_fd.h"
#include "shared/wire/limits.h"

namespace ct {

std::vector<std::string> MaterialFiles::paths() const {
  std::vector<std::string> out;
  for (const std::string* p : {&cert, &key, &ca, &service_cert, &service_key, &pin_file,
                               &upstream_ca, &beacon_ca, &beacon_cert, &beacon_key})
    if (!p->empty()) out.push_back(*p);
  return out;
}

Result<void> read_small_file(const std::string& path, size_t cap, std::string* out,
                             bool private_key) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) return fail_errno(errno, "cannot read " + path);
  struct stat st;
  if (fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return fail("cannot read " + path + ": not a regular file");
  // Checked on the file opened, not on the path (which may change meanwhile).
  if (private_key) {
    if (auto r = check_key_file(path, st); !r) return r;
  }
  // Room for the whole file up front: a string that grows reallocates and
  // leaves copies of a key behind in freed memory.
  wipe(*out);
  out->reserve(std::min(static_cast<size_t>(st.st_size), cap) + 1);
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n == 0) break;
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail_errno(errno, "cannot read " + path);
    }
    if (out->size() + static_cast<size_t>(n) > cap) {
      wipe(*out);
      return fail("cannot read " + path + ": larger than " + std::to_string(cap / 1024) + " KiB");
    }
    out->append(buf, static_cast<size_t>(n));
  }
  explicit_bzero(buf, sizeof buf);
  return {};
}

Result<void> check_key_file(const std::string& path, const struct stat& st) {
  const uid_t me = geteuid();
  if (st.st_uid != 0 && st.st_uid != me)
    return fail(path + " is owned by uid " + std::to_string(st.st_uid) +
                "; a private key must belong to root or to the user the daemon runs as (uid " +
                std::to_string(me) + ")");
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
  if ((st.st_mode & (S_IRWXO | S_IWGRP | S_IXGRP)) != 0)
    return fail(path + " has mode " + mode +
                ": a private key must not be accessible to others nor writable by its group "
                "(chmod 0600, or 0640 with the service's group)");
  // Group-readable only by the group this daemon runs in (the package's
  // 0640 root:vault for User=vault, a pod's fsGroup): that group can already
  // act as the daemon. Any other group would hand the key to more users.
  if ((st.st_mode & S_IRGRP) != 0 && st.st_gid != getegid()) {
    gid_t groups[256];
    const int n = getgroups(256, groups);
    bool ours = false;
    for (int i = 0; i < n; i++) ours = ours || groups[i] == st.st_gid;
    if (!ours)
      return fail(path + " has mode " + mode + " and group " + std::to_string(st.st_gid) +
                  ", which this daemon does not run in: chmod g-r, or give it the service's group");
  }
  return {};
}

MaterialStore::MaterialStore(MaterialFiles files, Validate validate)
    : files_(std::move(files)), validate_(std::move(validate)) {}

MaterialStore::~MaterialStore() {
  wipe_material(good_);
  wipe_material(candidate_);
}

Result<void> MaterialStore::read_pin_file(Material* m) const {
  std::string text;
  if (auto r = read_small_file(files_.pin_file, kMaxPemFile, &text); !r) return r;
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
    if (!pin)
      return fail(files_.pin_file + ":" + std::to_string(line_no) +
                  ": not a pin (expected sha256//<base64 of 32 bytes>)");
    m->pins.push_back(*pin);
    file_pins++;
  }
  // A file of comments only (or one caught mid-rewrite) would otherwise
  // mean "no pin", i.e. any certificate the CA signed.
  if (file_pins == 0)
    return fail(files_.pin_file +
                ": no pin in the file (one sha256//<base64 of 32 bytes> per line)");
  return {};
}

Result<void> MaterialStore::read(Material* m) const {
  Result<void> r = read_unwiped(m);
  if (!r) wipe_material(*m);
  return r;
}

Result<void> MaterialStore::read_unwiped(Material* m) const {
  if (auto r = read_small_file(files_.cert, kMaxPemFile, &m->cert_pem); !r) return r;
  if (auto r = read_small_file(files_.key, kMaxPemFile, &m->key_pem, /*private_key=*/true); !r)
    return r;
  // Optional only for the beacon (--client-ca); both link daemons require --ca-cert.
  if (!files_.ca.empty()) {
    if (auto r = read_small_file(files_.ca, kMaxPemFile, &m->ca_pem); !r) return r;
  }
  if (!files_.service_cert.empty()) {
    if (auto r = read_small_file(files_.service_cert, kMaxPemFile, &m->service_cert_pem); !r)
      return r;
  }
  if (!files_.service_key.empty()) {
    if (auto r = read_small_file(files_.service_key, kMaxPemFile, &m->service_key_pem,
                                 /*private_key=*/true);
        !r)
      return r;
  }
  if (!files_.upstream_ca.empty()) {
    if (auto r = read_small_file(files_.upstream_ca, kMaxPemFile, &m->upstream_ca_pem); !r)
      return r;
  }
  if (!files_.beacon_ca.empty()) {
    if (auto r = read_small_file(files_.beacon_ca, kMaxPemFile, &m->beacon_ca_pem); !r) return r;
  }
  m->beacon_pins = files_.beacon_pins;
  if (!files_.beacon_cert.empty()) {
    if (auto r = read_small_file(files_.beacon_cert, kMaxPemFile, &m->beacon_cert_pem); !r)
      return r;
    if (auto r = read_small_file(files_.beacon_key, kMaxPemFile, &m->beacon_key_pem,
                                 /*private_key=*/true);
        !r)
      return r;
  }
  m->pins = files_.pins;
  if (!files_.pin_file.empty()) {
    if (auto r = read_pin_file(m); !r) return r;
  }
  {
    std::vector<uint8_t> enc = encode_material(*m);
    const size_t size = enc.size();
    explicit_bzero(enc.data(), enc.size());
    if (size == 0 || size > limits::kMaxMaterial)
      return fail("certificate, key, CA, pin, service and --vault-ca files are " +
                  std::to_string(size / 1024) + " KiB in all; at most " +
                  std::to_string(limits::kMaxMaterial / 1024) +
                  " KiB fit the control message to the TLS process");
  }
  if (m->pins.size() > limits::kMaxPins)
    return fail(std::to_string(m->pins.size()) + " pins given (--" + files_.pin_flag + " and " +
                (files_.pin_file.empty() ? std::string("no file") : files_.pin_file) +
                "); at most " + std::to_string(limits::kMaxPins));
  return {};
}

Result<void> MaterialStore::read_checked(Material* into) const {
  Material m;
  Result<void> r = read(&m);
  if (r) r = validate_(m);
  if (!r) {
    wipe_material(m);
    return r;
  }
  wipe_material(*into);
  *into = std::move(m);
  return {};
}

Result<void> MaterialStore::load() {
  if (auto r = read_checked(&good_); !r) return r;
  loaded_ = true;
  return {};
}

Result<void> MaterialStore::propose() {
  if (auto r = read_checked(&candidate_); !r) return r;
  pending_ = true;
  return {};
}

bool MaterialStore::accept() {
  if (!pending_) return false;
  wipe_material(good_);
  good_ = std::move(candidate_);
  candidate_ = Material{};
  pending_ = false;
  return true;
}

void MaterialStore::refuse() {
  wipe_material(candidate_);
  candidate_ = Material{};
  pending_ = false;
}

}  // namespace ct
