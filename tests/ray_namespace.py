"""What a scenario can see of its network namespace (no import beyond the standard library)."""

from __future__ import annotations

from pathlib import Path

LISTEN = "0A"  # TCP state LISTEN in /proc/net/tcp


def listening_addresses() -> list[str]:
    """Local addresses of every listening TCP socket in this network namespace."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != LISTEN:
                continue
            address = fields[1].split(":")[0]
            assert len(address) == width
            # /proc writes each 32-bit word in host (little-endian) byte order.
            words = [bytes.fromhex(address[i : i + 8])[::-1] for i in range(0, width, 8)]
            raw = b"".join(words)
            if width == 8:
                found.append(".".join(str(b) for b in raw))
            else:
                found.append(":".join(raw[i : i + 2].hex() for i in range(0, 16, 2)))
    return found


def interfaces() -> list[str]:
    """Network interfaces of this namespace (/proc/net/dev is per namespace; /sys/class/net
    shows the namespace sysfs was mounted in)."""
    lines = Path("/proc/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":")[0].strip() for line in lines)
