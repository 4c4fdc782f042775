"""With `--host 127.0.0.1`, no process of the switch listens on anything but loopback: the
HTTP server, and every process of the embedded Ray (GCS, raylet, agents, shard workers)."""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path

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


def test_only_loopback_listens(tmp_path: Path) -> None:
    switch = SwitchProcess(tmp_path / "data", free_port(), shards=2,
                           log_path=tmp_path / "serve.log").start()
    try:
        assert switch.http.get("/v1/ledgers").status_code == 200  # shards and workers up
        listening = listening_sockets()
        by_process = {pid: sockets_of(pid, listening) for pid in switch.session_pids()}
        addresses = [address for found in by_process.values() for address in found]
        assert f"127.0.0.1:{switch.port}" in addresses, by_process
        assert len(addresses) >= 4, by_process  # the server, GCS, raylet, workers at least
        exposed = {pid: found for pid, found in by_process.items()
                   if any(not ipaddress.ip_address(a.rsplit(":", 1)[0]).is_loopback
                          for a in found)}
        assert not exposed, exposed
    finally:
        switch.kill_session()
