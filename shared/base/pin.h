// SPKI pins (curl's "sha256//<base64>" form), the base64 they are written in,
// and wiping secrets from memory before it is freed.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "shared/base/bytes.h"

namespace ct {

using Pin = std::array<uint8_t, 32>;  // SHA-256 of a DER SubjectPublicKeyInfo

// "sha256//<base64 of 32 bytes>" (curl's pin form) -> Pin.
std::optional<Pin> parse_pin(std::string_view s);
std::string format_pin(const Pin& p);
// Standard base64 with padding; nullopt on any other character or length.
std::optional<std::vector<uint8_t>> base64_decode(std::string_view s);
std::string base64_encode(Bytes b);

// Overwrites a string's bytes before it is freed (key material in the parent).
void wipe(std::string& s);

}  // namespace ct
