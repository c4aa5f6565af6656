#include "shared/base/pin.h"

#include <string.h>

namespace ct {

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

std::optional<std::vector<uint8_t>> base64_decode(std::string_view s) {
  if (s.size() % 4 != 0) return std::nullopt;
  std::vector<uint8_t> out;
  for (size_t i = 0; i < s.size(); i += 4) {
    int v[4];
    int pad = 0;
    for (int j = 0; j < 4; j++) {
      const char c = s[i + static_cast<size_t>(j)];
      if (c == '=' && i + 4 == s.size() && j >= 2) {
        v[j] = 0;
        pad++;
        continue;
      }
      if (pad > 0) return std::nullopt;  // data after padding
      v[j] = b64_value(c);
      if (v[j] < 0) return std::nullopt;
    }
    const uint32_t triple = (static_cast<uint32_t>(v[0]) << 18) |
                            (static_cast<uint32_t>(v[1]) << 12) |
                            (static_cast<uint32_t>(v[2]) << 6) | static_cast<uint32_t>(v[3]);
    out.push_back(static_cast<uint8_t>(triple >> 16));
    if (pad < 2) out.push_back(static_cast<uint8_t>(triple >> 8));
    if (pad < 1) out.push_back(static_cast<uint8_t>(triple));
  }
  return out;
}

std::string base64_encode(Bytes b) {
  std::string out;
  for (size_t i = 0; i < b.size(); i += 3) {
    uint32_t v = uint32_t{b[i]} << 16;
    if (i + 1 < b.size()) v |= uint32_t{b[i + 1]} << 8;
    if (i + 2 < b.size()) v |= b[i + 2];
    out += kB64[(v >> 18) & 63];
    out += kB64[(v >> 12) & 63];
    out += i + 1 < b.size() ? kB64[(v >> 6) & 63] : '=';
    out += i + 2 < b.size() ? kB64[v & 63] : '=';
  }
  return out;
}

std::optional<Pin> parse_pin(std::string_view s) {
  constexpr std::string_view kPrefix = "sha256//";
  if (s.substr(0, kPrefix.size()) != kPrefix) return std::nullopt;
  auto raw = base64_decode(s.substr(kPrefix.size()));
  if (!raw || raw->size() != 32) return std::nullopt;
  Pin p;
  std::copy(raw->begin(), raw->end(), p.begin());
  return p;
}

std::string format_pin(const Pin& p) {
  return "sha256//" + base64_encode(p);
}

void wipe(std::string& s) {
  if (!s.empty()) explicit_bzero(s.data(), s.size());
  s.clear();
}

}  // namespace ct
