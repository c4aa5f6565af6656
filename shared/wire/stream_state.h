// The per-stream state machine of the link protocol (docs/protocol.md §3).
// One enum, one name table and one transition function: every state change of
// every stream goes through stream_transition(), which rejects illegal moves.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace ct {

enum class StreamState : uint8_t {
  kOpen,              // both directions carry data
  kHalfClosedLocal,   // we sent FIN; the peer may still send
  kHalfClosedRemote,  // the peer sent FIN; we may still send
  kClosed,            // both FINs, or a RESET either way
};

enum class StreamInput : uint8_t { kSendFin, kRecvFin, kSendReset, kRecvReset };

std::string_view stream_state_name(StreamState s);
std::string_view stream_input_name(StreamInput i);

// The next state, or nullopt when `in` is illegal in `s` (the caller turns
// that into the protocol error the spec names).
std::optional<StreamState> stream_transition(StreamState s, StreamInput in);

inline bool can_send(StreamState s) {
  return s == StreamState::kOpen || s == StreamState::kHalfClosedRemote;
}
inline bool can_receive(StreamState s) {
  return s == StreamState::kOpen || s == StreamState::kHalfClosedLocal;
}

}  // namespace ct
