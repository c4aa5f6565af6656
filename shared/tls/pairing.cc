#include "shared/tls/pairing.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cctype>

#include "shared/base/check.h"
#include "shared/base/pin.h"
#include "shared/os/net.h"

namespace ct {

namespace {

constexpr std::string_view kRendezvousLabel = "cloudtaser beacon rendezvous v1";

std::string_view trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

}  // namespace

Result<std::vector<uint8_t>> parse_pairing_key(std::string_view file) {
  if (file.size() > kMaxPairingKeyFile)
    return fail("not a pairing key: larger than " + std::to_string(kMaxPairingKeyFile) + " bytes");
  const std::string_view line = trim(file);
  if (line.empty()) return fail("the pairing key file is empty");
  if (line.find_first_of(" \t\r\n") != std::string_view::npos)
    return fail("not a pairing key: more than one line (expected one line of base64)");
  auto key = base64_decode(line);
  if (!key) return fail("not a pairing key: not base64");
  if (key->size() < kMinPairingKey)
    return fail("pairing key too short: " + std::to_string(key->size()) + " bytes, at least " +
                std::to_string(kMinPairingKey) + " (make one with deploy/cloudtaser-certs)");
  return std::move(*key);
}

rdv::RendezvousId rendezvous_id(Bytes key) {
  rdv::RendezvousId id{};
  unsigned int len = 0;
  const uint8_t* r = HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
                          reinterpret_cast<const uint8_t*>(kRendezvousLabel.data()),
                          kRendezvousLabel.size(), id.data(), &len);
  CT_CHECK(r != nullptr && len == id.size());
  return id;
}

Result<std::string> normalise_beacon_address(std::string_view addr) {
  Result<HostPort> hp = parse_host_port(addr);
  if (!hp) {
    // No port: 443. A bare IPv6 literal must be bracketed to carry one.
    const bool bare =
        addr.find(':') == std::string_view::npos || (addr.front() == '[' && addr.back() == ']');
    if (addr.empty() || !bare) return hp.error();
    hp = parse_host_port(std::string(addr) + ":443");
    if (!hp) return hp.error();
  }
  std::string host = hp->host;
  std::transform(host.begin(), host.end(), host.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return host + ":" + std::to_string(hp->port);
}

std::vector<size_t> beacon_order(const rdv::RendezvousId& id,
                                 const std::vector<std::string>& normalised) {
  std::vector<std::pair<uint64_t, size_t>> w;
  for (size_t i = 0; i < normalised.size(); i++) {
    std::vector<uint8_t> in(id.begin(), id.end());
    in.insert(in.end(), normalised[i].begin(), normalised[i].end());
    uint8_t h[SHA256_DIGEST_LENGTH];
    CT_CHECK(EVP_Digest(in.data(), in.size(), h, nullptr, EVP_sha256(), nullptr) == 1);
    uint64_t v = 0;
    for (int b = 0; b < 8; b++) v = (v << 8) | h[b];
    w.emplace_back(v, i);
  }
  std::stable_sort(w.begin(), w.end(),
                   [](const auto& a, const auto& b) { return a.first > b.first; });
  std::vector<size_t> order;
  for (const auto& [weight, i] : w) order.push_back(i);
  return order;
}

std::string rendezvous_name(const rdv::RendezvousId& id) {
  static const char* hex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < 8; i++) {
    s.push_back(hex[id[i] >> 4]);
    s.push_back(hex[id[i] & 0xf]);
  }
  return s;
}

}  // namespace ct
