"""A Redis primary, one replica and three Sentinels (redis-server in sentinel mode), stopped by pid.

Used by `make stack STACK_REDIS_HA=1`, the tests and scripts/redis_ha.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import redis

REDIS_SERVER = "redis-server"


class RedisHA:
    """Primary on base_port, replica on base_port+1, Sentinels on base_port+2..+4 (quorum 2)."""

    # Keyword settings with defaults, alike in shape to PgBouncer's: two servers, two sets of knobs.
    def __init__(
        self,
        state_dir: str | Path,
        base_port: int,
        service: str = "quizapp",
        host: str = "127.0.0.1",
        down_after_ms: int = 2000,
        failover_timeout_ms: int = 4000,
        tls: dict | None = None,
    ):
        self.state_dir = Path(state_dir)
        self.base_port = base_port
        self.service = service
        self.host = host
        self.down_after_ms = down_after_ms
        self.failover_timeout_ms = failover_timeout_ms
        self.tls = tls  # {"cert", "key", "ca"}: every node and Sentinel speaks TLS only, with client certs
        self.procs: dict[str, subprocess.Popen] = {}

    @property
    def data_ports(self) -> list[int]:
        return [self.base_port, self.base_port + 1]

    @property
    def sentinel_ports(self) -> list[int]:
        return [self.base_port + 2 + i for i in range(3)]

    @property
    def sentinels(self) -> str:
        """The REDIS_SENTINELS value for the app."""
        return ",".join(f"{self.host}:{port}" for port in self.sentinel_ports)

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        with open(self.state_dir / f"{name}.log", "ab") as log:
            proc = subprocess.Popen(
                [REDIS_SERVER, *args],
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.procs[name] = proc
        return proc

    def _data_node(self, port: int, replica_of: int | None) -> list[str]:
        # Bound to one local address only; protected mode would refuse the namespaces' clients.
        args = ["--bind", self.host, "--protected-mode", "no", "--save", "", "--appendonly", "no"]
        for name, value in self._listen(port):
            args += [f"--{name}", value]
        args += ["--dir", str(self.state_dir), "--dbfilename", f"dump-{port}.rdb"]
        args += ["--repl-diskless-sync", "yes", "--repl-diskless-sync-delay", "0"]
        if replica_of:
            args += ["--replicaof", self.host, str(replica_of)]
        return args

    def _listen(self, port: int) -> list[tuple[str, str]]:
        """(directive, value) pairs: a plain port, or a TLS port (TLS replication too) and no plain one."""
        if not self.tls:
            return [("port", str(port))]
        return [
            ("port", "0"),
            ("tls-port", str(port)),
            ("tls-replication", "yes"),
            ("tls-cert-file", str(self.tls["cert"])),
            ("tls-key-file", str(self.tls["key"])),
            ("tls-ca-cert-file", str(self.tls["ca"])),
            ("tls-auth-clients", "yes"),
        ]

    def _sentinel_conf(self, port: int) -> Path:
        path = self.state_dir / f"sentinel-{port}.conf"
        service = self.service
        path.write_text(
            f"bind {self.host}\nprotected-mode no\ndir {self.state_dir}\n"
            + "".join(f"{name} {value}\n" for name, value in self._listen(port))
            + f"sentinel monitor {service} {self.host} {self.base_port} 2\n"
            f"sentinel down-after-milliseconds {service} {self.down_after_ms}\n"
            f"sentinel failover-timeout {service} {self.failover_timeout_ms}\n"
            f"sentinel parallel-syncs {service} 1\n"
        )
        return path

    def start(self, timeout: float = 30.0) -> RedisHA:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        primary, replica = self.data_ports
        self._spawn(f"redis-{primary}", self._data_node(primary, None))
        self._spawn(f"redis-{replica}", self._data_node(replica, primary))
        for port in self.sentinel_ports:
            self._spawn(f"sentinel-{port}", [str(self._sentinel_conf(port)), "--sentinel"])
        self.wait_healthy(timeout)
        self._write_state()
        return self

    def _write_state(self) -> None:
        pids = {name: proc.pid for name, proc in self.procs.items()}
        (self.state_dir / "redis-ha.json").write_text(json.dumps({"pids": pids, "sentinels": self.sentinels}))

    def client(self, port: int) -> redis.Redis:
        tls = {}
        if self.tls:
            tls = {"ssl": True, "ssl_ca_certs": str(self.tls["ca"]), "ssl_check_hostname": False}
            tls.update(ssl_certfile=str(self.tls["cert"]), ssl_keyfile=str(self.tls["key"]))
        return redis.Redis(self.host, port, socket_timeout=1, socket_connect_timeout=1, **tls)

    def primary_port(self) -> int | None:
        """The primary's port as the Sentinels' majority sees it (None while they disagree)."""
        seen = []
        for port in self.sentinel_ports:
            try:
                sentinel = self.client(port)
                address = sentinel.execute_command("SENTINEL", "get-master-addr-by-name", self.service)
            except redis.RedisError:
                continue
            if address:
                seen.append(int(address[1]))
        best = max(set(seen), key=seen.count) if seen else None
        return best if best is not None and seen.count(best) >= 2 else None

    def wait_healthy(self, timeout: float) -> None:
        """Replica in sync and every Sentinel knowing the replica and the other Sentinels."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._healthy():
                return
            time.sleep(0.1)
        raise RuntimeError(f"Redis HA did not become healthy within {timeout}s (logs in {self.state_dir})")

    def _healthy(self) -> bool:
        try:
            primary = self.primary_port()
            if primary is None:
                return False
            if not self._online_replica_ports(primary):
                return False
            for port in self.sentinel_ports:
                master = self.client(port).execute_command("SENTINEL", "master", self.service)
                if isinstance(master, list):  # RESP2 without a parser callback: flat name/value pairs
                    master = dict(zip(master[::2], master[1::2], strict=True))
                fields = {_text(k): _text(v) for k, v in master.items()}
                if int(fields["num-slaves"]) < 1 or int(fields["num-other-sentinels"]) < 2:
                    return False
            return True
        except (redis.RedisError, KeyError, ValueError):
            return False

    def kill(self, port: int) -> float:
        """SIGKILL the data node on `port` (no goodbye to clients or Sentinels); return the time the
        signal went out: an answer stamped later may already have met the dead node (on a busy box,
        reaping the process can take longer than a request)."""
        proc = self.procs[f"redis-{port}"]
        sent_at = time.monotonic()
        proc.kill()
        proc.wait(timeout=10)
        return sent_at

    def restart(self, port: int, timeout: float = 30.0) -> None:
        """Start a killed data node again as a replica of the current primary (Sentinel would too).
        The primary is asked until a majority of Sentinels name it: on a busy box one Sentinel may
        not answer within its second, and a node started with no primary comes back an empty primary
        (no replica for the durable writes' WAIT until Sentinel demotes it, ~10 s later)."""
        deadline = time.monotonic() + timeout
        primary = self.primary_port()
        while primary in (None, port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"no primary other than {port} named within {timeout}s")
            time.sleep(0.1)
            primary = self.primary_port()
        self._spawn(f"redis-{port}", self._data_node(port, primary))
        self._write_state()

    def _online_replica_ports(self, primary: int) -> set[int]:
        """The ports of the replicas the primary lists in state online (INFO replication)."""
        info = self.client(primary).info("replication")
        replicas = [v for key, v in info.items() if key.startswith("slave") and isinstance(v, dict)]
        return {int(r.get("port", 0)) for r in replicas if r.get("state") == "online"}

    def replica_online(self, port: int) -> bool:
        """True once the current primary lists the node on `port` as a replica in state online."""
        primary = self.primary_port()
        try:
            return primary is not None and port in self._online_replica_ports(primary)
        except redis.RedisError:
            return False

    def stop(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def stop_from_state(state_dir: Path) -> None:
    state = state_dir / "redis-ha.json"
    if not state.exists():
        return
    for name, pid in json.loads(state.read_text())["pids"].items():
        try:
            os.kill(pid, signal.SIGTERM)
            print(f"redis-ha: stopped {name} (pid {pid})")
        except ProcessLookupError:
            pass
    state.unlink()
