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

// The stream's origin in a version 3 OPEN (docs/protocol.md §3a): every TLV at
// its longest, so that a receiver checks an OPEN's length against a number it
// can reach and buffers no more than a well-formed origin needs. SOURCE and
// DEST 2+19 (IPv6), STREAM_ID 2+8, CLUSTER 2+63, AUTHORITY 2+253 (a DNS name).
inline constexpr size_t kMaxClusterName = 63;
inline constexpr size_t kMaxAuthority = 253;
inline constexpr uint32_t kMaxOriginPayload =
    (2 + 19) * 2 + (2 + 8) + (2 + kMaxClusterName) + (2 + kMaxAuthority);
static_assert(kMaxOriginPayload == 372);

// Windows are signed-31-bit like HTTP/2 so that 64-bit checked arithmetic
// can never overflow and a peer cannot wrap a window (go-yamux#112).
inline constexpr uint32_t kMaxWindow = 0x7fffffff;
inline constexpr uint32_t kMaxStreamId = 0x7fffffff;

// What a receiver grants per stream on the link. 1 MiB: with 256 KiB, a bulk
// transfer stalled on credit round trips (make bench-bulk: 370-383 MiB/s with
// 256 KiB windows on both link and data channel, 393-414 with 1 MiB), while a
// stalled wrapper still pins at most this much in each process on its path.
inline constexpr uint32_t kDefaultStreamWindow = 1024 * 1024;
// What auto-tuning (session.h SessionConfig::max_stream_window) may grow a
// link stream's window to, when the round trip asks for it: 1 MiB per 40 ms
// caps a stream at 25 MiB/s (make bench-wan), 16 MiB at 400. Bounded also by
// half the process's memory budget, so with the broker's default 32 MiB a
// stream reaches 16 MiB only while nothing else holds the budget.
inline constexpr uint32_t kMaxAutoStreamWindow = 16 * 1024 * 1024;
// While auto-tuned streams move data, a PING at most this often keeps the
// round trip current (a path that grew longer must not leave windows small).
inline constexpr auto kAutoTunePingInterval = std::chrono::seconds(1);
// Streams between the two processes of one host (the data channel), for the
// same reason.
inline constexpr uint32_t kLocalStreamWindow = 1024 * 1024;
// Except what the broker's TLS process grants its forwarding process: that is
// what a wrapper held while no bridge is connected can make the TLS process
// buffer (kMaxPendingOpens x this), and it carries requests, which are small.
inline constexpr uint32_t kPendingStreamWindow = 256 * 1024;

// With a memory budget (--memory-budget, session.h CreditPool), what a stream
// is granted before it earns more from the budget: 4096 pending wrappers hold
// 32 MiB at most this way, and a stream reaches 1 MiB after seven updates.
inline constexpr uint32_t kPooledInitialWindow = 8 * 1024;
// ...except what the broker's TLS process grants a wrapper's upload: that is
// what a wrapper held while no bridge is connected makes it buffer, and
// kMaxPendingOpens x this (8 MiB) must stay well inside the budget. Requests
// are small; a large upload earns more once it flows.
inline constexpr uint32_t kPendingInitialWindow = 2 * 1024;
// --memory-budget's default, per broker process (TLS and forwarding): two of
// these plus the processes' own ~30 MiB fit the chart's 128 Mi limit with
// headroom for socket and allocator overhead.
inline constexpr uint32_t kDefaultMemoryBudgetMiB = 32;
// The kernel's send buffer of each spliced socket (SO_SNDBUF; Linux doubles
// it for its own overhead). Bytes a stalled reader has not taken sit there,
// charged to the pod's memory cgroup but invisible to --memory-budget, and
// autotuning grows the buffer to tcp_wmem's 4 MiB: 64 stalled wrappers held
// 171 MiB of send queue in the broker, beyond the chart's 128 Mi. Fixed at
// 128 KiB (256 KiB charged) a stalled socket holds at most that much.
inline constexpr int kSpliceSendBuffer = 128 * 1024;
inline constexpr uint32_t kMaxMemoryBudgetMiB = 65536;

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
// A wrapper's TLS handshake in the bridge (--service-cert), from the stream's
// open: absolute, not renewed by bytes, so a client that sends nothing, or a
// ClientHello one byte every few seconds, holds a broker fd, a stream and TLS
// state for this long at most. A real client on a loaded node finishes in ms.
inline constexpr auto kWrapperHandshakeTimeout = 10s;
// --stream-idle-timeout's default: no byte either way for this long resets a
// stream. OpenBao's own listener closes a keep-alive connection idle for 5
// minutes (http_idle_timeout) and cancels a request after 90 s
// (max_request_duration), so no request OpenBao itself lets run is cut; only
// streams silent longer than OpenBao tolerates (sys/monitor, event
// subscriptions with nothing to say) need a larger value or 0.
inline constexpr auto kDefaultStreamIdleTimeout = 300s;
inline constexpr uint32_t kMaxStreamIdleTimeoutSec = 86400;
// TCP keepalive on wrapper and OpenBao sockets: a peer that vanished without a
// FIN or RST (a node lost, a partition) is found within idle + interval x
// count = 2 minutes even on a stream the idle timeout leaves alone.
inline constexpr int kStreamKeepIdleSec = 60;
inline constexpr int kStreamKeepIntervalSec = 10;
inline constexpr int kStreamKeepCount = 6;
// Keepalive on the link: a PING every 5 s; nothing received for 15 s means
// the peer is dead (silent partitions, SIGSTOPped peers: F-39, FI-04, FI-06).
inline constexpr auto kPingInterval = 5s;
inline constexpr auto kDeadPeerTimeout = 15s;

// Reads per loop iteration per connection: bounds the work one busy peer can
// cause before other fds get their turn (F-06).
inline constexpr size_t kReadChunk = 256 * 1024;

// ---------------------------------------------------------------- admission
// Each listening port's admission pools (shared/os/admission.h).
//
// Bridge port (exposed to the internet): TLS handshakes in flight. 128 is far
// more than a fleet of bridges reconnecting at once needs, and small enough
// that the TLS process (RLIMIT_NOFILE 256) can hold them next to every link.
inline constexpr size_t kBridgeHandshakes = 128;
// One address may hold this many: a bridge host needs one, a NAT gateway in
// front of a few bridges a handful; 50 addresses are still needed to fill the pool.
inline constexpr size_t kBridgeHandshakesPerSource = 8;
// A TLS 1.3 handshake is two round trips; 3 s covers a slow intercontinental
// path, and a silent socket holds a slot for no longer (absolute, from accept).
inline constexpr auto kBridgeHandshakeDeadline = 3s;
// A handshake is never evicted before this age, so a real bridge always gets
// one full second to finish however fast a flood reconnects; while every
// handshake is younger the listener pauses and newcomers wait in the backlog.
inline constexpr auto kBridgeHandshakeMinAge = 1s;
// Authenticated bridge links: reserved, handshakes can never take them.
// A deployment runs a few bridges per broker; 64 leaves room for a rolling
// update of a large fleet.
inline constexpr size_t kMaxBridgeLinks = 64;
// --replicas: how many broker replicas a deployment runs, told to bridges so
// that each links to all of them. Every bridge holds a link per replica; 16
// is far beyond what one cluster's secret reads need (docs/cluster.md).
inline constexpr uint32_t kMaxReplicas = 16;

// Service port (every pod can reach it): wrapper connections at once. Each is
// one fd and one stream on the data channel, whose peer accepts
// kMaxConcurrentStreams; past it the listener pauses.
inline constexpr size_t kMaxWrapperConns = 16384;
// File descriptors the broker's forwarding process keeps apart from wrappers:
// the metrics and probe listeners' pools (2 x (kHttpHeads + kHttpAnswers)) and
// its own channels, listeners, reserve and loop (32), so that with every
// wrapper slot taken /metrics and the probes are still answered. The service
// port admits at most RLIMIT_NOFILE minus this many wrappers.
inline constexpr size_t kFdsKeptApart = 96;
// Default of --max-wrappers-per-source: a wrapper holds a few connections;
// 256 leaves room for bursts while one pod can take at most 1/64 of the total.
inline constexpr uint32_t kDefaultWrappersPerSource = 256;
inline constexpr uint32_t kMaxWrappersPerSourceFlag = 16384;

// Metrics and probe ports (plain HTTP, one GET per connection): a request head
// must be complete within this long of accept; scrapers and kubelet send it at
// once, so 2 s only ever cuts off a silent or dribbling client.
inline constexpr auto kHttpHeadDeadline = 2s;
// Request heads in flight per listener, and per source address: Prometheus
// and kubelet each use one or two at a time.
inline constexpr size_t kHttpHeads = 16;
inline constexpr size_t kHttpHeadsPerSource = 8;
// A head is evictable (oldest first) once this old: a probe's GET arrives in
// well under that, so it is never evicted by a flood behind it.
inline constexpr auto kHttpHeadMinAge = 250ms;
// Answers being written, reserved apart from the heads; a reader that does
// not take its answer is dropped at kHttpConnDeadline after accept.
inline constexpr size_t kHttpAnswers = 16;
inline constexpr auto kHttpConnDeadline = 5s;

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
// Hunting for a broker replica the bridge has no link to yet (the load
// balancer picks the replica of each dial): a link that reaches an instance
// already held is closed, and the next dial waits 100-250 ms (at most 10
// dials a second, each one TLS handshake on a broker). With 3 replicas
// behind a uniformly random balancer, 16 dials miss the last one with
// probability (2/3)^16 < 0.2 %; after 16 duplicates in a row (a replica that
// is down or still starting, or a balancer that keeps picking the same one)
// the waits are full jitter over 1 s doubling to kHuntBackoffCap, the sync
// dial's top: about what a bridge holding every replica dials anyway (below),
// so a replacement that takes minutes to start is found within seconds of
// being ready, not after waits grown to 30 s (before 2026-12-02).
inline constexpr auto kHuntDialMin = 100ms;
inline constexpr auto kHuntDialMax = 250ms;
inline constexpr unsigned kHuntFastDials = 16;
// Every replica linked: a rolling update with maxSurge 1 (the chart's) starts
// the new broker first and stops an old one only once the new one is ready,
// which needs a bridge link. So a bridge holding every replica still dials
// every 2-4 s (one TLS handshake, closed at once as a duplicate, logged at
// debug), keeping up to kSurgeReplicas instances beyond the replicas the
// brokers announce. With 3 replicas behind a random balancer the new one is
// found in 4 dials (12 s) on average.
inline constexpr auto kSyncDialMin = 2s;
inline constexpr auto kSyncDialMax = 4s;
inline constexpr auto kHuntBackoffCap = kSyncDialMax;
inline constexpr unsigned kSurgeReplicas = 1;

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
