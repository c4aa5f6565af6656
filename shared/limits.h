// Every hard limit of the link protocol and the daemons, with its reason.
// docs/protocol.md §6 lists the same table; a change here changes the spec.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>

namespace ct::limits {

using namespace std::chrono_literals;

// One TLS record carries at most 16 KiB of plaintext; a larger frame would only
// make the receiver buffer more before it can check anything.
inline constexpr uint32_t kMaxFramePayload = 16384;
// The smallest max-frame a peer may advertise: below this the header overhead
// dominates and a peer could force us into per-byte work (data dribble).
inline constexpr uint32_t kMinFramePayload = 1024;
inline constexpr size_t kFrameHeaderSize = 10;

// Windows are signed-31-bit like HTTP/2 so that 64-bit checked arithmetic
// can never overflow and a peer cannot wrap a window (go-yamux#112).
inline constexpr uint32_t kMaxWindow = 0x7fffffff;
inline constexpr uint32_t kMaxStreamId = 0x7fffffff;

// What a receiver grants per stream on the link. 1 MiB: with 256 KiB, a bulk
// transfer stalled on credit round trips (make bench-bulk: 370-383 MiB/s with
// 256 KiB windows on both link and data channel, 393-414 with 1 MiB), while a
// stalled wrapper still pins at most this much in each process on its path.
inline constexpr uint32_t kDefaultStreamWindow = 1024 * 1024;
// Streams between the two processes of one host (the data channel), for the
// same reason.
inline constexpr uint32_t kLocalStreamWindow = 1024 * 1024;
// Except what the broker's TLS process grants its forwarding process: that is
// what a wrapper held while no bridge is connected can make the TLS process
// buffer (kMaxPendingOpens x this), and it carries requests, which are small.
inline constexpr uint32_t kPendingStreamWindow = 256 * 1024;

// The connection window only bounds bytes in flight on the wire (credit is
// returned as soon as bytes reach a stream), so it can be generous.
inline constexpr uint32_t kDefaultConnWindow = 16 * 1024 * 1024;

// Concurrent streams per connection. A broker holds every wrapper as one fd in
// its forwarding process, and a process here may hold at most 20000 fds.
inline constexpr uint32_t kMaxConcurrentStreams = 16384;

// Wrappers held while no bridge is connected: each costs an fd; beyond this a
// new wrapper is closed at once rather than queued without bound (F-36).
inline constexpr size_t kMaxPendingOpens = 4096;

// Frames a peer can make us send (PONG, RESET, WINDOW) while it is not
// reading our output: beyond this it is flooding us (F-28, F-37; nghttp2 and
// Envoy use 1000 for the same purpose).
inline constexpr size_t kMaxQueuedControlFrames = 1000;

// Output we hold for one connection before we stop producing DATA for it
// (watermark back-pressure). Control frames still go out up to the cap above.
inline constexpr size_t kOutputHighWater = 1024 * 1024;

// Glitches (legal-but-suspicious frames) and resets share a token bucket, as
// nghttp2 and HAProxy do since Rapid Reset; resets we send because of the
// peer's frames are charged too (MadeYouReset).
inline constexpr uint32_t kMisbehaviourBurst = 1000;
inline constexpr uint32_t kMisbehaviourRefillPerSec = 200;
// Streams we reset whose in-flight DATA (up to the window they still had) is
// counted as glitches but not charged: a pod dying with 100 busy connections
// must not cost the link (F-18). Remembered oldest-first up to this many per
// connection (about 50 B each); the stragglers of older ones are charged.
inline constexpr size_t kMaxResetAllowances = 4096;

// Time for the peer's HELLO after the session starts, and for a TLS handshake.
inline constexpr auto kHelloTimeout = 10s;
inline constexpr auto kHandshakeTimeout = 10s;
// Keepalive on the link: a PING every 5 s; nothing received for 15 s means
// the peer is dead (silent partitions, SIGSTOPped peers: F-39, FI-04, FI-06).
inline constexpr auto kPingInterval = 5s;
inline constexpr auto kDeadPeerTimeout = 15s;

// Reads per loop iteration per connection: bounds the work one busy peer can
// cause before other fds get their turn (F-06).
inline constexpr size_t kReadChunk = 256 * 1024;

// IPC between processes of one daemon: a control message carries at most the
// certificate material (a few chains and a key), never stream data.
inline constexpr size_t kMaxIpcMessage = 1024 * 1024;

// The bridge's redial. A failure that cost the broker nothing (connection
// refused, reset, no route, a connect timeout, a lookup failure) is retried
// after a uniform 250-500 ms: the bridge serves again within a second of the
// broker listening again, the jitter spreads a fleet of bridges, and a bridge
// waiting for its broker makes at most 4 connection attempts per second.
inline constexpr auto kRedialMin = 250ms;
inline constexpr auto kRedialMax = 500ms;
// A failure that cost the broker a handshake, or that the same configuration
// will repeat (TLS, certificate or pin errors): full jitter over 1 s doubling
// to 30 s, the attempt count reset by any link that completed its HELLO.
inline constexpr auto kRedialBackoffBase = 1s;
inline constexpr auto kRedialBackoffCap = 30s;

// The parent's heartbeat on each child's control channel: a PING every
// second, answered by the child's loop. A loop never blocks (every fd is
// non-blocking and each iteration's work is bounded, kReadChunk), so a child
// that has not answered within 2 s is stuck or stopped: the broker's /readyz
// turns not-ready; within 5 s (generous on a loaded machine) it is killed
// and restarted, well before a bridge's 15 s dead-peer timeout.
inline constexpr auto kHeartbeatInterval = 1s;
inline constexpr auto kHeartbeatGrace = 2s;
inline constexpr auto kHeartbeatTimeout = 5s;

// Certificate material (certificate, key, CA, pins, service certificate and
// key) travels to the TLS process in one control message, one SOCK_SEQPACKET
// datagram, which must fit the socket's send buffer: 208 KiB with Linux's
// default net.core.wmem_default (sendmsg fails with EMSGSIZE beyond).
inline constexpr size_t kMaxMaterial = 192 * 1024;

// Peer pins per daemon (flags and pin file together): a current and a next key
// for each of a few bridges or brokers. More is a mistake in the file, and
// every pin is checked on every handshake.
inline constexpr size_t kMaxPins = 16;

}  // namespace ct::limits
