#include "shared/tls/beacon_config.h"

#include <cstring>

#include "shared/base/pin.h"
#include "shared/tls/pairing.h"

namespace ct {

Result<std::vector<HostPort>> parse_beacon_flags(const Flags& f, ProcSettings* settings,
                                                 MaterialFiles* files) {
  const auto& given = f.all("beacon-address");
  if (given.size() > kMaxBeacons)
    return fail("at most " + std::to_string(kMaxBeacons) + " --beacon-address");
  std::vector<std::string> names;
  for (const std::string& a : given) {
    auto n = normalise_beacon_address(a);
    if (!n) return fail("bad --beacon-address '" + a + "': " + n.what());
    for (const std::string& seen : names)
      if (seen == *n) return fail("--beacon-address " + *n + " given twice");
    names.push_back(*n);
  }
  if (!f.has("beacon-ca")) return fail("beacon mode needs --beacon-ca (the beacons' CA)");
  if (!f.has("pairing-key-file"))
    return fail("beacon mode needs --pairing-key-file (made by cloudtaser-certs)");
  std::string text;
  const std::string key_path = f.get("pairing-key-file");
  if (auto r = read_small_file(key_path, kMaxPairingKeyFile, &text, /*private_key=*/true); !r)
    return fail("--pairing-key-file: " + r.what());
  auto key = parse_pairing_key(text);
  wipe(text);
  if (!key) return fail(key_path + ": " + key.what());
  settings->rendezvous = rendezvous_id(*key);
  explicit_bzero(key->data(), key->size());
  std::vector<HostPort> out;
  settings->beacons.clear();
  for (size_t i : beacon_order(settings->rendezvous, names)) {
    settings->beacons.push_back(names[i]);
    auto hp = parse_host_port(names[i]);
    CT_CHECK(hp.ok());
    out.push_back(*hp);
  }
  files->beacon_ca = f.get("beacon-ca");
  if (f.has("beacon-cert") != f.has("beacon-key"))
    return fail("--beacon-cert and --beacon-key go together");
  if (f.has("beacon-cert")) {
    files->beacon_cert = f.get("beacon-cert");
    files->beacon_key = f.get("beacon-key");
  }
  for (const std::string& p : f.all("beacon-pin")) {
    auto pin = parse_pin(p);
    if (!pin) return fail("bad --beacon-pin '" + p + "': expected sha256//<base64 of 32 bytes>");
    files->beacon_pins.push_back(*pin);
  }
  return out;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const std::string& x : v) s += (s.empty() ? "" : ", ") + x;
  return s;
}

}  // namespace ct
