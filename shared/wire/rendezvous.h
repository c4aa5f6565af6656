// The rendezvous protocol (docs/beacon.md §2): what a broker or a bridge says
// to a beacon after the outer TLS handshake (the preamble) and what the beacon
// answers, before the connection carries the inner link. Sans-IO: the readers
// are handed bytes and say how many more they need, so a caller reads exactly
// one message off the outer session and never a byte of the inner one.
#pragma once

#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "shared/base/bytes.h"
#include "shared/wire/limits.h"

namespace ct::rdv {

inline constexpr size_t kIdSize = 32;
inline constexpr size_t kInstanceSize = 16;  // as HELLO's instance id
// A bridge names at most this many instances it already holds: as many as it
// may link (shared/wire/limits.h: the largest --replicas and the surge).
inline constexpr size_t kMaxInstances = limits::kMaxReplicas + limits::kSurgeReplicas;
inline constexpr size_t kPreambleFixed = 8 + kIdSize;
inline constexpr size_t kMaxPreamble = kPreambleFixed + kMaxInstances * kInstanceSize;
inline constexpr size_t kAnswerFixed = 8;
inline constexpr size_t kMaxReason = 200;
inline constexpr uint8_t kVersion = 1;

// The beacon's timing (docs/beacon.md §3), and how long each side waits for
// the beacon's next answer before it gives the connection up: a bridge, the
// pairing timeout and a margin; a broker's waiting connection, two keepalives.
inline constexpr std::chrono::seconds kPairingTimeout{10};
inline constexpr std::chrono::seconds kKeepaliveInterval{25};
inline constexpr std::chrono::seconds kBridgeAnswerWait = kPairingTimeout + std::chrono::seconds(5);
inline constexpr std::chrono::seconds kBrokerAnswerWait = 2 * kKeepaliveInterval;

using RendezvousId = std::array<uint8_t, kIdSize>;
using InstanceId = std::array<uint8_t, kInstanceSize>;

enum class Role : uint8_t { kBroker = 1, kBridge = 2 };

enum class Answer : uint8_t {
  kPaired = 0,
  kKeepalive = 1,
  kBadPreamble = 2,
  kNoPeer = 3,
  kOverCapacity = 4,
  kShutdown = 5,
};
inline constexpr uint8_t kMaxAnswer = 5;
const char* answer_name(Answer a);
const char* role_name(Role r);

struct Preamble {
  Role role = Role::kBridge;
  RendezvousId id{};
  // A broker: exactly its own instance. A bridge: the instances it already
  // holds (0..kMaxInstances), which it must not be paired with again.
  std::vector<InstanceId> instances;
};

// Why a preamble is not valid, or empty when it is (the encoder's and the
// reader's one rule set).
std::string preamble_problem(const Preamble& p);
// The preamble's bytes. The caller passes a valid preamble (CHECKed).
std::vector<uint8_t> encode_preamble(const Preamble& p);

// Reads one preamble: the fixed 40 bytes first (checked as soon as they are
// in), then exactly the instance ids the count announced.
class PreambleReader {
 public:
  enum class State { kMore, kDone, kBad };
  // How many more bytes the preamble needs now (0 once decided).
  size_t wanted() const;
  // Takes bytes; more than wanted() is itself an error (a client does not
  // speak after its preamble until it is paired).
  State feed(Bytes b);
  State state() const { return state_; }
  const Preamble& preamble() const { return p_; }
  const std::string& error() const { return error_; }

 private:
  State fail(std::string why);
  std::vector<uint8_t> buf_;
  size_t need_ = kPreambleFixed;
  State state_ = State::kMore;
  Preamble p_;
  std::string error_;
};

// An answer's bytes. `reason` is cut to kMaxReason bytes and any byte that is
// not printable ASCII becomes '?', so whatever a caller passes is valid.
std::vector<uint8_t> encode_answer(Answer a, std::string_view reason = {});

// Reads answers one after another (KEEPALIVEs, then PAIRED or a refusal):
// the fixed 8 bytes, then exactly the reason.
class AnswerReader {
 public:
  enum class State { kMore, kDone, kBad };
  size_t wanted() const;
  State feed(Bytes b);
  State state() const { return state_; }
  Answer answer() const { return answer_; }
  const std::string& reason() const { return reason_; }
  const std::string& error() const { return error_; }
  // Ready for the next answer (after a KEEPALIVE).
  void next();

 private:
  State fail(std::string why);
  std::vector<uint8_t> buf_;
  size_t need_ = kAnswerFixed;
  State state_ = State::kMore;
  Answer answer_ = Answer::kPaired;
  std::string reason_;
  std::string error_;
};

}  // namespace ct::rdv
