// Connection admission for one listening port: who may hold a slot, for how
// long, and when the listener stops accepting. Sans-IO: the owner accepts the
// connection, asks here, and closes what it is told to close; this class holds
// no fd and reads no clock, so every rule is unit-tested with a fake time
// (tests/unit/admission_test.cc).
//
// Two pools, because they protect different things:
// - handshakes: connections that have not proved who they are (a TLS
//   handshake, an HTTP request head). Small, with a per-source cap and an
//   absolute deadline counted from accept (not reset by a byte). When it is
//   full the OLDEST handshake is evicted for the newcomer: a flood of silent
//   sockets then cycles through the pool instead of holding it, and a real
//   peer behind it gets its turn. A handshake is never evicted before it has
//   had min_age to finish; while the oldest is younger the listener pauses
//   (the newcomers wait in the kernel's backlog, in order) rather than
//   accepting and closing.
// - established: links past their handshake (authenticated bridges, wrapper
//   connections). Slots reserved for them that no handshake can take. When
//   this pool is full on a port without handshakes, the listener pauses.
//
// Per-source caps key an IPv4 address (v4-mapped IPv6 as IPv4) or an IPv6 /64
// (what one host normally owns). A newcomer over its source's cap is refused
// (closed at once): pausing the listener would stop every other source.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <sys/socket.h>

#include "shared/base/bytes.h"
#include "shared/base/time.h"

namespace ct {

struct SourceKey {
  uint8_t family = 0;  // AF_INET or AF_INET6 (v4-mapped addresses are AF_INET)
  std::array<uint8_t, 16> addr{};
  auto operator<=>(const SourceKey&) const = default;
  std::string str() const;
};
// The key of a peer address; nullopt for a family that has no source (AF_UNIX).
std::optional<SourceKey> source_key(const sockaddr_storage& ss);

// Why a connection was turned away or ended early. The order is the label
// order in metrics; append only.
enum class Refusal : uint8_t {
  kEvicted = 0,         // oldest handshake, evicted for a newcomer
  kPerSource = 1,       // its source already holds its cap
  kNoReservedSlot = 2,  // handshake done but every established slot is taken
  kDeadline = 3,        // handshake not done by its absolute deadline
  kFdLimit = 4,         // accept hit EMFILE/ENFILE: shed with the reserve fd
  kPaused = 5,          // the listener was taken out of epoll (pool full)
};
inline constexpr size_t kRefusalKinds = 6;
const char* refusal_name(Refusal r);

struct AdmissionLimits {
  size_t handshakes = 0;  // 0: the port has no handshake phase
  size_t handshakes_per_source = 0;
  Duration handshake_deadline{};
  Duration min_age{};  // a handshake is evictable only once this old
  size_t established = 0;
  size_t established_per_source = 0;  // 0: no per-source cap
};

class Admission {
 public:
  using Id = uint64_t;
  explicit Admission(const AdmissionLimits& l) : lim_(l) {}

  struct Decision {
    bool admit = false;
    Refusal why = Refusal::kPerSource;  // when !admit
    Id evict = 0;                       // nonzero: close this one (already out of the pool)
  };
  // A connection `id` (strictly increasing per port) was accepted from src.
  // Ports with a handshake phase admit it as a handshake; ports without it
  // straight into the established pool.
  Decision on_accept(Id id, const SourceKey& src, TimePoint now);
  // The handshake of `id` completed: moves it to a reserved slot. False: no
  // slot (or its source is at the established cap); the owner closes it.
  bool on_established(Id id);
  // The connection is gone, for whatever reason (unknown ids are ignored).
  void on_closed(Id id);
  // Handshakes past their deadline, taken out of the pool: the owner closes them.
  std::vector<Id> expired(TimePoint now);

  // Whether the listener should be in epoll. The owner re-asks after every
  // accept, close and tick, and counts a transition to false with paused().
  bool accepting(TimePoint now) const;
  // The next time something changes without I/O: a handshake deadline, or
  // the moment a paused listener may resume.
  TimePoint next_deadline() const;

  void count(Refusal r) { counts_[static_cast<size_t>(r)]++; }
  uint64_t refused(Refusal r) const { return counts_[static_cast<size_t>(r)]; }
  size_t handshakes() const { return hs_.size(); }
  size_t established() const { return est_.size(); }
  const AdmissionLimits& limits() const { return lim_; }

 private:
  struct Handshake {
    SourceKey src;
    TimePoint admitted;
  };
  static void dec(std::map<SourceKey, size_t>& m, const SourceKey& k);
  static size_t get(const std::map<SourceKey, size_t>& m, const SourceKey& k);

  AdmissionLimits lim_;
  // Keyed by id: ids grow with accept time, so begin() is the oldest.
  std::map<Id, Handshake> hs_;
  std::map<Id, SourceKey> est_;
  std::map<SourceKey, size_t> hs_per_src_, est_per_src_;
  std::array<uint64_t, kRefusalKinds> counts_{};
};

// Options the parent hands a forwarding process with a listening socket (in
// the LISTENER / METRICS_LISTENER body), so that the limits the operator set
// by flag reach the process that enforces them.
struct ListenerOptions {
  uint32_t max_per_source = 0;  // service port: wrappers per source address
  uint8_t probes_only = 0;      // metrics listener: 1 = /healthz and /readyz only
};
std::vector<uint8_t> encode_listener_options(const ListenerOptions& o);
// Empty input is the defaults (a parent that sends none).
std::optional<ListenerOptions> decode_listener_options(Bytes b);
inline constexpr uint32_t kListenerOptionsSize = 5;

}  // namespace ct
