"""Make a CURVE key pair for the monitor's ZeroMQ sockets (transport.curve): `<name>.key` holds the
public key (give it to the other side), `<name>.key_secret` both keys (keep it; mode 0600). Existing
files are never overwritten.

The monitor needs its own pair (server_secret_key) and a folder with the public key of every viewer
it admits (authorized_keys); each viewer needs its own pair (client_secret_key) and the monitor's
public key (server_public_key). docs/deploy.md (networking) walks through it.

examples:
  stream-monitor keys --out /etc/stream-monitor/curve --name monitor
  stream-monitor keys --out /etc/stream-monitor/curve --name overlay-room1
  cp /etc/stream-monitor/curve/overlay-room1.key /etc/stream-monitor/curve/authorized/
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..transport.security import write_keypair


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, required=True, help="folder to write the two files into")
    parser.add_argument("--name", required=True, help="file name stem, e.g. monitor or overlay-room1")


def run(args: argparse.Namespace) -> int:
    public, secret = write_keypair(args.out, args.name)
    print(f"public key: {public}\nsecret key pair: {secret} (mode 0600: keep it on this host)")
    return 0
