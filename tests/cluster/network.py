"""Three hosts on one machine: a network namespace each, joined by veth pairs to a bridge.

The bridge lives in the root namespace with the first address of the subnet, so the test
process (in the root namespace) reaches every host as a client from outside would. Taking a
host's link down sets the bridge end of its veth pair down: a pulled cable, which the other
hosts see as silence rather than as refused connections.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass

SUBNET = "10.231.0"
PREFIX = "pjc"
BRIDGE = f"{PREFIX}br0"
BRIDGE_ADDRESS = f"{SUBNET}.1"


class SetupError(Exception):
    """The machine cannot hold the harness; the message names what is missing."""


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Runs `ip ARGS`; a failure raises with ip's own words when `check`."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise SetupError(f"`ip {' '.join(args)}` failed: {done.stderr.strip()}")
    return done


@dataclass(frozen=True, slots=True)
class Host:
    """One host: a namespace, an address on the bridge, and the veth pair that links it."""

    number: int

    @property
    def name(self) -> str:
        return f"h{self.number}"

    @property
    def namespace(self) -> str:
        return f"{PREFIX}-h{self.number}"

    @property
    def address(self) -> str:
        return f"{SUBNET}.{10 + self.number}"

    @property
    def cable(self) -> str:
        """The bridge end of the host's veth pair (in the root namespace)."""
        return f"{PREFIX}h{self.number}"

    def command(self, args: Sequence[str]) -> list[str]:
        """`args` run inside this host's namespace (ip netns exec replaces itself, so the
        process's pid is the command's)."""
        return ["ip", "netns", "exec", self.namespace, *args]

    def pids(self) -> list[int]:
        """Every process running in this host's namespace."""
        done = ip("netns", "pids", self.namespace, check=False)
        return [int(pid) for pid in done.stdout.split()]

    def kill_all(self) -> list[int]:
        """kill -9 of every process on this host; the pids killed."""
        pids = self.pids()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        return pids


HOSTS = (Host(1), Host(2), Host(3))


def check_machine() -> None:
    """Raises SetupError naming what this machine lacks to build the hosts."""
    if os.geteuid() != 0:
        raise SetupError("the cluster harness needs root (network namespaces and veth pairs)")
    if shutil.which("ip") is None:
        raise SetupError("the cluster harness needs iproute2's `ip` command on the PATH")


class Network:
    """The bridge and the three hosts: built idempotently, torn down completely."""

    def __init__(self, hosts: Sequence[Host] = HOSTS) -> None:
        self.hosts = tuple(hosts)

    def build(self) -> None:
        """Removes what a killed run left behind, then builds the bridge and the hosts."""
        check_machine()
        self.tear_down()
        ip("link", "add", BRIDGE, "type", "bridge")
        ip("addr", "add", f"{BRIDGE_ADDRESS}/24", "dev", BRIDGE)
        ip("link", "set", BRIDGE, "up")
        for host in self.hosts:
            ip("netns", "add", host.namespace)
            ip("-n", host.namespace, "link", "set", "lo", "up")
            ip("link", "add", host.cable, "type", "veth", "peer", "name", "eth0",
               "netns", host.namespace)
            ip("-n", host.namespace, "addr", "add", f"{host.address}/24", "dev", "eth0")
            ip("-n", host.namespace, "link", "set", "eth0", "up")
            ip("link", "set", host.cable, "master", BRIDGE)
            ip("link", "set", host.cable, "up")

    def link_down(self, host: Host) -> None:
        ip("link", "set", host.cable, "down")

    def link_up(self, host: Host) -> None:
        ip("link", "set", host.cable, "up")

    def tear_down(self) -> None:
        """Kills every process left on the hosts, then deletes the hosts and the bridge;
        quiet about what is already gone."""
        for host in self.hosts:
            if ip("netns", "pids", host.namespace, check=False).returncode == 0:
                host.kill_all()
            ip("netns", "delete", host.namespace, check=False)
            ip("link", "delete", host.cable, check=False)
        ip("link", "delete", BRIDGE, check=False)
