"""Several broker replicas (issue 12): the bridge links to every one of them
through the one --broker-address, and the path survives losing a replica.

- RandomBalancer stands in for the LoadBalancer in front of the brokers' bridge
  ports (Service cloudtaser-broker-bridge): each new connection goes to a
  backend chosen uniformly at random among those that accept, as a cloud
  balancer hashing fresh source ports does. So the bridge must hunt: a dial
  that reaches a replica it already holds is closed as a duplicate.
- ServiceProxy (test_rolling_update.py) stands in for kube-proxy in front of
  the wrappers' Service: ready brokers only, polled every 100 ms.
- Wrappers (test_rolling_update.py) retry only when the connection is refused
  or closed before the first byte of the response; anything else is a lost read.
"""
import random
import re
import signal
import socket
import time

from harness import free_port, kv_ok, wait_for
from test_rolling_update import (ATTEMPT_TIMEOUT, REQUEST_DEADLINE, Forwarder, LoadGenerator,
                                 ServiceProxy, _readyz)
from test_status_file import read

REPLICAS = 3
LOAD_THREADS = 8


class RandomBalancer(Forwarder):
    """A backend chosen at random among those whose bridge port accepts."""

    def __init__(self, backends):
        self.backends = backends  # {name: bridge port}; replaced whole, never mutated
        super().__init__("lb")

    def pick(self):
        names = list(self.backends.items())
        random.shuffle(names)
        for name, port in names:
            try:
                s = socket.create_connection(("127.0.0.1", port), timeout=2)
            except OSError:
                continue
            s.settimeout(None)
            return name, s
        return None


def instance_of(broker):
    return broker.wait_log(r"instance ([0-9a-f]{16}), one of").group(1)


def linked_instances(path):
    return set(re.findall(r'cloudtaser_bridge_broker_instance_linked\{instance="([0-9a-f]{16})"\} 1',
                          read(path)))


class Cluster:
    """REPLICAS brokers behind both balancers, and one bridge."""

    def __init__(self, env, tmp_path, drain_timeout=10):
        self.env = env
        self.drain_timeout = drain_timeout
        self.brokers = {}   # name -> (Broker, probe port)
        self.up = env.kv()
        self.status_file = tmp_path / "bridge.prom"
        for name in "ABC"[:REPLICAS]:
            self.brokers[name] = self._start()
        self.lb = RandomBalancer({n: b.bridge_port for n, (b, _) in self.brokers.items()})
        self.svc = ServiceProxy({n: (b.service_port, p) for n, (b, p) in self.brokers.items()})
        self.bridge = None

    def _start(self):
        probe = free_port()
        b = self.env.broker(extra=["--replicas", str(REPLICAS),
                                   "--probe-listen", f"127.0.0.1:{probe}",
                                   "--drain-timeout", str(self.drain_timeout)])
        return b, probe

    def start_bridge(self):
        self.bridge = self.env.bridge(self.lb.port, self.up.addr,
                                      extra=["--status-file", str(self.status_file)])
        return self.bridge

    def instances(self):
        return {instance_of(b) for b, _ in self.brokers.values()}

    def all_ready(self):
        return all(_readyz(p)[0] == 200 for _, p in self.brokers.values())

    def fully_linked(self):
        """The bridge holds one link to each live broker, and no other."""
        text = read(self.status_file)
        return (linked_instances(self.status_file) == self.instances()
                and f"cloudtaser_bridge_links_up {REPLICAS}\n" in text)

    def _publish(self):
        # Whole new dicts: the balancers' threads iterate the old ones.
        self.lb.backends = {n: x.bridge_port for n, (x, _) in self.brokers.items()}
        self.svc.backends = {n: (x.service_port, q) for n, (x, q) in self.brokers.items()}

    def add(self, name):
        self.brokers[name] = self._start()
        self._publish()
        return self.brokers[name][0]

    def remove(self, name):
        del self.brokers[name]
        self._publish()

    def replace(self, name, new_name):
        """A replacement broker behind both balancers in place of `name`."""
        self.remove(name)
        return self.add(new_name)

    def close(self):
        self.lb.close()
        self.svc.close()


def _linked_under_load(c, what):
    """The bridge linked to all three, all three ready, and LOAD_THREADS
    wrappers reading through them: the LoadGenerator."""
    c.start_bridge()
    wait_for(c.fully_linked, 10, "three links")
    wait_for(lambda: c.svc.ready == ["A", "B", "C"], 5, "three ready endpoints")
    load = LoadGenerator(c.svc.port, LOAD_THREADS)
    wait_for(lambda: load.ok_count() >= 60, 30, f"requests served {what}")
    return load


def _check_no_lost_reads(done, summary):
    lost = [(w.name, w.outcome, w.attempts[-3:]) for w in done if w.outcome != "ok"]
    assert not lost, f"{len(lost)} lost: {lost[:10]}\n{summary}"


def test_the_bridge_links_to_every_replica_within_five_seconds(env, tmp_path):
    c = Cluster(env, tmp_path)
    try:
        t0 = time.monotonic()
        c.start_bridge()
        wait_for(c.all_ready, 5, "all three brokers ready (a bridge linked to each)")
        wait_for(c.fully_linked, 5 - (time.monotonic() - t0) + 0.5,
                 "the bridge holding exactly one link to each of the three brokers")
        took = time.monotonic() - t0
        text = read(c.status_file)
        assert "cloudtaser_bridge_broker_replicas_expected 3\n" in text, text
        assert "cloudtaser_bridge_broker_replicas_linked 3\n" in text, text
        assert took < 5.5, f"three links after {took:.2f}s"
        # Every broker carries requests: wrappers on each one's service port.
        for b, _ in c.brokers.values():
            assert kv_ok(b.service_port), b.text()
        # Duplicates were closed with their own GOAWAY code, as a clean end: no
        # broker logged a warning about a link, and the hunt went on at most
        # 10 dials a second.
        dups = sum(b.count(r"bridge sent GOAWAY \(DUPLICATE_LINK\)") for b, _ in c.brokers.values())
        for b, _ in c.brokers.values():
            assert b.count(r"warn: conn=\d+ link error") == 0, b.text()
        accepted = sum(b.count(r"conn=\d+ bridge connected") for b, _ in c.brokers.values())
        assert accepted == REPLICAS + dups, (accepted, dups)
        assert accepted <= 10 * took + 3, f"{accepted} links in {took:.2f}s"
        print(f"three links in {took:.2f}s, {dups} duplicate(s) closed on the way")
    finally:
        c.close()


def test_kill_9_of_one_broker_under_load_loses_no_read(env, tmp_path):
    c = Cluster(env, tmp_path)
    load = None
    try:
        load = _linked_under_load(c, "before the kill")

        victim, _ = c.brokers["B"]
        victim.kill()  # SIGKILL to the broker's whole process group
        served = load.ok_count()
        wait_for(lambda: load.ok_count() >= served + 60, 30, "requests served by A and C")

        t_new = time.monotonic()
        c.replace("B", "D")
        # The balancer picks the replica of each dial: one dial in three finds
        # the replacement, so "within 5 s" holds in ~99 % of tries (16 fast
        # dials 100-250 ms apart from the loss, then waits of at most 4 s; a
        # make faults run of 20 missed once). The bound asserted is the one the
        # hunt guarantees but for a 1-in-10^4 run of misses; the time is printed.
        wait_for(c.fully_linked, 15, "the bridge back to three links with the replacement")
        relinked = time.monotonic() - t_new
        served = load.ok_count()
        wait_for(lambda: load.ok_count() >= served + 60, 30, "requests served after the replacement")
    finally:
        done = load.finish(REQUEST_DEADLINE + ATTEMPT_TIMEOUT) if load else []
        c.close()
    retried = sum(len(w.attempts) > 1 for w in done)
    summary = (f"{len(done)} reads, {retried} retried; three links again "
               f"{relinked:.2f}s after the replacement started")
    print(summary)
    # kill -9 cuts the responses the victim was sending at that instant: no
    # tunnel can deliver the rest, and the wrapper sees a reset, never a short
    # read passed off as whole. At most one per load thread; every other read
    # (before, during and after the loss) must succeed.
    cut = [w for w in done if w.outcome.startswith("reset after ") and
           not w.outcome.startswith("reset after 0 ")]
    assert len(cut) <= LOAD_THREADS, summary
    _check_no_lost_reads([w for w in done if w not in cut], summary + f"; {len(cut)} cut mid-response by the kill")
    assert len(done) >= 180


def test_a_rolling_restart_of_every_replica_loses_no_read(env, tmp_path):
    """The chart's strategy, maxSurge 1 and maxUnavailable 0: each new broker
    starts first and must turn ready (a bridge linked to it) before the old one
    gets SIGTERM; the bridge finds the surge replica by its 2-4 s probing."""
    c = Cluster(env, tmp_path, drain_timeout=10)
    load = None
    steps = []
    try:
        load = _linked_under_load(c, "before the update")
        for old, new in (("A", "D"), ("B", "E"), ("C", "F")):
            t0 = time.monotonic()
            old_broker, _ = c.brokers[old]
            c.add(new)
            wait_for(lambda: new in c.svc.ready, 60, f"the surge broker {new} ready")
            t_ready = time.monotonic()
            old_broker.signal(signal.SIGTERM)
            assert old_broker.wait_exit(c.drain_timeout + 10) == 0, old_broker.text()
            c.remove(old)
            wait_for(c.fully_linked, 10, f"three links after {old} left")
            served = load.ok_count()
            wait_for(lambda: load.ok_count() >= served + 30, 30, f"requests served after {old}")
            steps.append(f"{old}->{new}: new ready {t_ready - t0:.1f}s, "
                         f"done {time.monotonic() - t0:.1f}s")
        # Drains and duplicates are routine: no warning about a link on any
        # broker (checked before the balancers close and cut the links).
        for d in env.daemons:
            if "cloudtaser-broker" in d.argv[0]:
                assert d.count(r"warn: conn=\d+ link error") == 0, d.text()
    finally:
        done = load.finish(REQUEST_DEADLINE + ATTEMPT_TIMEOUT) if load else []
        c.close()
    retried = sum(len(w.attempts) > 1 for w in done)
    summary = f"{len(done)} reads, {retried} retried; " + "; ".join(steps)
    print(summary)
    _check_no_lost_reads(done, summary)
    assert len(steps) == 3, summary


def test_a_bridge_holding_every_replica_looks_for_more_without_a_log_line(env):
    """With every replica linked the bridge still dials every 2-4 s, for a
    rollout's surge replica (docs/ha.md). Behind one address those dials reach
    a broker it holds and close as duplicates: routine, so nothing at info in
    either daemon, and no STATUS change (each was two parent log lines and two
    sd_notify calls before, some 2,900 lines an hour)."""
    broker, bridge, up = env.tunnel(broker_extra=["--log-level", "debug"],
                                    bridge_extra=["--log-level", "debug",
                                                  "--status-file", env.tmp / "bridge.prom"])
    assert kv_ok(broker.service_port)
    # The first health report of the bridge's OpenBao is start-up, not a sync
    # dial, and can land after the first read: count from after it.
    bridge.wait_log(r"OpenBao at \S+: unknown -> active")
    broker.wait_log(r"conn=\d+ bridge's OpenBao: unknown -> active")
    info = re.compile(r"^\S+ (?:vault-bridge|cloudtaser-broker)\[\w+\] info: .*$", re.M)
    before = {d: len(info.findall(d.text())) for d in (broker, bridge)}
    dups = bridge.count(r"duplicate link closed")
    wait_for(lambda: bridge.count(r"duplicate link closed") >= dups + 3, 20,
             "three sync dials closed as duplicates")
    for d in (broker, bridge):
        new = info.findall(d.text())[before[d]:]
        assert not new, "\n".join(new)
    assert kv_ok(broker.service_port)
