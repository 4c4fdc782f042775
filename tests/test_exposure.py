"""What every process of a running switch must have: with `--host 127.0.0.1`, no process
listens on anything but loopback (the HTTP server, and every process of the embedded Ray: GCS,
raylet, agents, shard workers); and the shards run with the switch's malloc tuning."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from actors.runtime import MALLOC_TUNING
from tests.chaos import free_port
from tests.launcher import SwitchProcess

LISTEN = "0A"  # the TCP state of a listening socket in /proc/net/tcp*


def _address(hex_address: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """/proc/net/tcp* addresses: 32-bit words in host (little-endian) order."""
    raw = bytes.fromhex(hex_address)
    words = b"".join(raw[i:i + 4][::-1] for i in range(0, len(raw), 4))
    address = ipaddress.ip_address(words)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def listening_sockets() -> dict[str, str]:
    """inode -> "address:port" of every listening TCP socket of this machine."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == LISTEN:
                hex_address, hex_port = fields[1].split(":")
                found[fields[9]] = f"{_address(hex_address)}:{int(hex_port, 16)}"
    return found


def sockets_of(pid: int, listening: dict[str, str]) -> list[str]:
    addresses = []
    try:
        descriptors = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return addresses
    for descriptor in descriptors:
        try:
            target = os.readlink(f"/proc/{pid}/fd/{descriptor}")
        except OSError:
            continue
        if target.startswith("socket:[") and target[8:-1] in listening:
            addresses.append(listening[target[8:-1]])
    return addresses


@pytest.fixture(scope="module")
def switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SwitchProcess]:
    work = tmp_path_factory.mktemp("exposure")
    running = SwitchProcess(work / "data", free_port(), shards=2,
                            log_path=work / "serve.log").start()
    try:
        assert running.http.get("/v1/ledgers").status_code == 200  # shards and workers up
        yield running
    finally:
        running.kill_session()


def test_only_loopback_listens(switch: SwitchProcess) -> None:
    listening = listening_sockets()
    by_process = {pid: sockets_of(pid, listening) for pid in switch.session_pids()}
    addresses = [address for found in by_process.values() for address in found]
    assert f"127.0.0.1:{switch.port}" in addresses, by_process
    assert len(addresses) >= 4, by_process  # the server, GCS, raylet, workers at least
    exposed = {pid: found for pid, found in by_process.items()
               if any(not ipaddress.ip_address(a.rsplit(":", 1)[0]).is_loopback
                      for a in found)}
    assert not exposed, exposed


def test_the_shards_and_the_raylet_run_with_the_malloc_tuning(switch: SwitchProcess) -> None:
    """Two arenas and a fixed mmap threshold in the shard actors (where the accounts live:
    bench/RESULTS.md, "Memory") and in the raylet
    that starts Ray's workers. The ingress sets them in itself with `mallopt`, which
    /proc/<pid>/environ (a process's environment at exec) cannot show; Ray's own agents are
    left out: some are started with an environment of Ray's choosing, or retitle themselves
    over it."""
    commands = {pid: _read(f"/proc/{pid}/cmdline") for pid in switch.session_pids()}
    checked = [pid for pid, command in commands.items()
               if b"ShardActor" in command or command.split(b"\0")[0].endswith(b"/raylet")]
    assert len(checked) == 3, commands  # two shards and the raylet
    for pid in checked:
        environ = dict(entry.partition(b"=")[::2]
                       for entry in _read(f"/proc/{pid}/environ").split(b"\0") if entry)
        for variable, value in MALLOC_TUNING.items():
            assert environ.get(variable.encode()) == str(value).encode(), (
                variable, commands[pid][:80])


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError:  # a process that ended meanwhile
        return b""
