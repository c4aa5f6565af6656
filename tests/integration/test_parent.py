"""The parents: what they guarantee about their children whatever the
children do (limits, liveness, the control channel)."""
from pathlib import Path

from harness import BROKER, Daemon


def _limit(pid, name):
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith(name):
            soft, hard = line[len(name):].split()[:2]
            return soft, hard
    raise AssertionError(f"no {name} in /proc/{pid}/limits")


def test_the_soft_fd_limit_is_raised_to_the_hard_limit_before_the_children_start(env):
    # systemd's usual soft limit is 1024: the forwarding process, which holds
    # one fd per wrapper, must not inherit it.
    d = Daemon(["prlimit", "--nofile=1024:8192", BROKER, "--bridge-listen", "127.0.0.1:0",
                "--service-listen", "127.0.0.1:0", "--cert", env.broker_crt, "--key",
                env.broker_key, "--ca-cert", env.pki.ca_crt, "--bridge-pin", env.bridge_pin],
               env.tmp / "broker.log")
    env.daemons.append(d)
    d.wait_log(r"\[parent\] info: ready")
    d.wait_log(r"file descriptor limit raised from 1024 to 8192")
    assert _limit(d.proc.pid, "Max open files") == ("8192", "8192")
    fwd = d.children()["forward"]
    assert _limit(fwd, "Max open files") == ("8192", "8192")
