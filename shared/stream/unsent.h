// Bytes held to be sent on later (a relay direction, a splice's socket
// backlog): buf[pos..] is unsent, buf[..pos] already went.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "shared/base/bytes.h"

namespace ct {

// Appends `data` to what is held unsent. The budget bounds the unsent bytes
// of all streams together, so what a stream's buffer allocates must stay
// close to them: bytes already sent on are dropped before the buffer would
// grow (the copy replaces the one growing would make), and growth is by a
// quarter, not std::vector's doubling. Without the drop, a reader slower than
// its sender never lets the buffer empty and it holds the whole stream (the
// broker's forwarding process reached 39 MiB with a budget of 8); with
// doubling, a process held several times its budget (the bridge's TLS
// process 190 MiB with a budget of 16).
inline void append_unsent(std::vector<uint8_t>& buf, size_t& pos, Bytes data) {
  if (data.empty()) return;
  if (buf.size() + data.size() > buf.capacity()) {
    if (pos > 0) {
      buf.erase(buf.begin(), buf.begin() + static_cast<std::ptrdiff_t>(pos));
      pos = 0;
    }
    const size_t need = buf.size() + data.size();
    if (need > buf.capacity()) buf.reserve(need + need / 4);
  }
  buf.insert(buf.end(), data.begin(), data.end());
}

}  // namespace ct
