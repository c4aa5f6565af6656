// The bridge's reading of OpenBao's health answer (bridge/vault_health.h):
// bytes from the network, read by the TLS process.
//
// Input: one split byte (how many bytes each feed takes, 1..16, 0: all at
// once), then the answer. Oracle:
//  - feeding it in pieces decides exactly what feeding it whole decides, at
//    the same point (the end of the status line, or its cap);
//  - nothing is decided before a LF or before the cap, and the line is never
//    buffered beyond kMaxHealthStatusLine bytes: an answer whose first
//    kMaxHealthStatusLine + 1 bytes hold no LF is decided unreachable;
//  - a state other than unreachable comes only from a line that starts with
//    "HTTP/1.0 " or "HTTP/1.1 " followed by three digits;
//  - over_cap() exactly when more than kMaxHealthAnswer bytes came.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "bridge/vault_health.h"
#include "fuzz/fuzz_input.h"

namespace {

using namespace ct;
using namespace ct::bridge;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = data[0] % 17;
  const Bytes answer(data + 1, size - 1);

  HealthAnswer whole;
  const auto all = whole.feed(answer);

  HealthAnswer pieces;
  std::optional<UpstreamState> got;
  size_t decided_at = 0;  // bytes fed when it was first decided
  for (size_t off = 0; off < answer.size();) {
    const size_t n = step == 0 ? answer.size() : std::min(step, answer.size() - off);
    const auto r = pieces.feed(answer.subspan(off, n));
    off += n;
    if (r && !got) {
      got = r;
      decided_at = off;
    }
    FZ_CHECK(!got || r == got, "a decided answer changed");
  }
  FZ_CHECK(got == all, "pieces of %zu decided otherwise than the whole", step);
  FZ_CHECK(pieces.over_cap() == (answer.size() > kMaxHealthAnswer), "over_cap after %zu bytes",
           answer.size());

  const std::string_view text(reinterpret_cast<const char*>(answer.data()), answer.size());
  const size_t lf = text.find('\n');
  const bool must_decide = lf != std::string_view::npos || answer.size() > kMaxHealthStatusLine;
  FZ_CHECK(all.has_value() == must_decide, "decided=%d with %zu bytes, LF at %zu", all.has_value(),
           answer.size(), lf);
  if (got && step != 0) {
    // Decided in the piece that held the LF, or the byte beyond the cap.
    const size_t end = lf != std::string_view::npos && lf <= kMaxHealthStatusLine
                           ? lf + 1
                           : kMaxHealthStatusLine + 1;
    FZ_CHECK(decided_at >= end && decided_at < end + step, "decided at %zu, not with byte %zu",
             decided_at, end);
  }
  if (all && *all != UpstreamState::kUnreachable) {
    FZ_CHECK(lf != std::string_view::npos && lf >= 13 && lf <= kMaxHealthStatusLine,
             "a state from a line of %zu bytes", lf);
    const std::string_view line = text.substr(0, lf);
    FZ_CHECK(line.substr(0, 9) == "HTTP/1.1 " || line.substr(0, 9) == "HTTP/1.0 ",
             "a state without an HTTP/1.x status line");
    for (size_t i = 9; i < 12; i++)
      FZ_CHECK(line[i] >= '0' && line[i] <= '9', "a non-digit in the code");
    FZ_CHECK(line.back() == '\r', "a state from a line without CR");
  }
  return 0;
}
