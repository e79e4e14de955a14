"""A private network for WebRTC with Chromium: run inside `unshare -n` (root).

Headless Chromium ignores ICE candidates on loopback, so a test or benchmark that listens in
Chromium gives the hub one end of a veth pair instead: the browser reaches it as it would a hub
on the LAN. Used by tests/netns_listen.py and bench/listen.py.
"""

from __future__ import annotations

import subprocess

HUB_IP, PEER_IP = "10.203.0.1", "10.203.0.2"


def make_veth_network() -> None:
    """Loopback up, and a veth pair fw0 (HUB_IP) <-> fw1 (PEER_IP), in this namespace."""
    for cmd in (["ip", "link", "set", "lo", "up"],
                ["ip", "link", "add", "fw0", "type", "veth", "peer", "name", "fw1"],
                ["ip", "addr", "add", f"{HUB_IP}/24", "dev", "fw0"],
                ["ip", "addr", "add", f"{PEER_IP}/24", "dev", "fw1"],
                ["ip", "link", "set", "fw0", "up"], ["ip", "link", "set", "fw1", "up"]):
        subprocess.run(cmd, check=True)
