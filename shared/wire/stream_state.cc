#include "shared/wire/stream_state.h"

namespace ct {

std::string_view stream_state_name(StreamState s) {
  switch (s) {
    case StreamState::kOpen:
      return "open";
    case StreamState::kHalfClosedLocal:
      return "half_closed_local";
    case StreamState::kHalfClosedRemote:
      return "half_closed_remote";
    case StreamState::kClosed:
      return "closed";
  }
  return "?";
}

std::string_view stream_input_name(StreamInput i) {
  switch (i) {
    case StreamInput::kSendFin:
      return "send_fin";
    case StreamInput::kRecvFin:
      return "recv_fin";
    case StreamInput::kSendReset:
      return "send_reset";
    case StreamInput::kRecvReset:
      return "recv_reset";
  }
  return "?";
}

std::optional<StreamState> stream_transition(StreamState s, StreamInput in) {
  using S = StreamState;
  switch (in) {
    case StreamInput::kSendReset:
    case StreamInput::kRecvReset:
      if (s == S::kClosed) return std::nullopt;
      return S::kClosed;
    case StreamInput::kSendFin:
      if (s == S::kOpen) return S::kHalfClosedLocal;
      if (s == S::kHalfClosedRemote) return S::kClosed;
      return std::nullopt;
    case StreamInput::kRecvFin:
      if (s == S::kOpen) return S::kHalfClosedRemote;
      if (s == S::kHalfClosedLocal) return S::kClosed;
      return std::nullopt;
  }
  return std::nullopt;
}

}  // namespace ct
