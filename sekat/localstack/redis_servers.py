"""Redis on loopback: one server, or a Redis Cluster of several (all masters).

No persistence: the blocklist's source of truth is the reports topic, and the index is rebuilt
from it.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from sekat.localstack.processes import ServerProcess, StackError, free_port, port_open


@dataclass
class RedisServer(ServerProcess):
    """A Redis server on loopback with no persistence."""

    name = "redis"
    port: int = 6379
    extra_args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        if self.running():
            return
        binary = shutil.which("redis-server")
        if binary is None:
            raise StackError("redis-server is not installed; run deploy/bootstrap.sh (apt-get install redis-server)")
        if port_open(self.port):
            raise StackError(f"port 127.0.0.1:{self.port} is taken by another process; set another Redis port")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        proc = self.launch([binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "", "--appendonly",
                            "no", "--dir", str(self.data_dir), "--logfile", str(self.data_dir / "redis.log"),
                            "--daemonize", "no", *self.extra_args])
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise StackError(f"redis-server exited with code {proc.returncode}; see {self.data_dir / 'redis.log'}")
            if port_open(self.port):
                return
            time.sleep(0.05)
        raise StackError(f"redis-server did not open port {self.port} in {timeout:.0f}s")


@dataclass
class RedisClusterServers:
    """A Redis Cluster on loopback: one ``redis-server --cluster-enabled yes`` per port, all masters.

    Joined with ``redis-cli --cluster create ... --cluster-replicas 0`` (slots split evenly), ready when
    every node reports ``cluster_state:ok``.
    """

    data_dir: Path
    ports: list[int]
    servers: list[RedisServer] = field(init=False)

    def __post_init__(self) -> None:
        if len(self.ports) < 3:
            raise StackError("a Redis Cluster needs at least 3 masters (ports)")
        # The cluster bus listens on port + 10000 by default; a free port from the OS may be too high for
        # that, so such a node gets a free bus port of its own (cluster-port, Redis >= 7).
        self.servers = [RedisServer(self.data_dir / f"redis-{p}", p,
                                    ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                                     "--cluster-node-timeout", "5000",
                                     "--cluster-port", str(p + 10000 if p + 10000 < 65536 else free_port())])
                        for p in self.ports]

    @property
    def url(self) -> str:
        return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in self.ports)

    def running(self) -> bool:
        return all(s.running() for s in self.servers)

    def _cli(self, port: int, *args: str) -> str:
        cli = shutil.which("redis-cli")
        if cli is None:
            raise StackError("redis-cli is not installed; run deploy/bootstrap.sh (apt-get install redis-server)")
        result = subprocess.run([cli, "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, text=True,
                                timeout=60)
        if result.returncode != 0:
            raise StackError(f"redis-cli {' '.join(args)} failed:\n{result.stdout}{result.stderr}")
        return result.stdout

    def start(self, timeout: float = 30.0) -> None:
        if self.running():
            return
        try:
            for server in self.servers:
                server.start()
            # A node that knows only itself was never joined (restarted nodes rejoin from nodes.conf).
            if "cluster_known_nodes:1" in self._cli(self.ports[0], "cluster", "info").split():
                self._cli(self.ports[0], "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                          "--cluster-replicas", "0", "--cluster-yes")
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if all("cluster_state:ok" in self._cli(p, "cluster", "info") for p in self.ports):
                    return
                time.sleep(0.1)
            raise StackError(f"the Redis Cluster on ports {self.ports} did not reach cluster_state:ok "
                             f"in {timeout:.0f}s")
        except Exception:
            self.stop()
            raise

    def stop(self) -> bool:
        return any([s.stop() for s in self.servers])
