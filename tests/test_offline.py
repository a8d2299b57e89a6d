"""Offline, as in a Kaggle kernel: every stage and `package` (without --upload) need no network.

The commands run in a subprocess cut off from the network, by the first of:

1. `netns`: `unshare -rn`, a user + network namespace of its own whose only interface is
   loopback (brought up here, as `ip link set lo up` would), where the machine allows it;
2. `sockets`: a `sitecustomize` module on PYTHONPATH, inherited by every Python the command
   starts (papermill's kernel, pip), that refuses `connect`, `connect_ex`,
   `create_connection` and `getaddrinfo` for any address but loopback. It cannot see C
   libraries' own sockets (libzmq, libcurl), which is why `netns` comes first.

Loopback keeps working in both: papermill talks to its kernel over ZMQ on 127.0.0.1.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sleepdetect.experiment import Experiment
from tiny_run import TINY_DEMO

REPO = Path(__file__).resolve().parents[1]

# Run first inside the namespace: bring `lo` up (no `ip` needed), then become the command.
LO_UP = textwrap.dedent(
    """\
    import fcntl, os, socket, struct, sys
    IFF_UP, IFF_LOOPBACK, IFF_RUNNING, SIOCSIFFLAGS = 0x1, 0x8, 0x40, 0x8914
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack("16sH", b"lo", IFF_UP | IFF_LOOPBACK | IFF_RUNNING))
    s.close()
    os.execvp(sys.argv[1], sys.argv[1:])
    """
)

BLOCK_SOCKETS = textwrap.dedent(
    """\
    # sitecustomize written by tests/test_offline.py: no network but loopback
    import ipaddress
    import socket

    _connect, _connect_ex = socket.socket.connect, socket.socket.connect_ex
    _getaddrinfo = socket.getaddrinfo


    def _loopback(host):
        if host in (None, "", "localhost", "localhost.localdomain"):
            return True
        try:
            return ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            return False


    def _check(address):
        if isinstance(address, tuple) and not _loopback(address[0]):
            raise OSError(f"network blocked: {address[0]} is not loopback (offline test)")


    def connect(self, address):
        _check(address)
        return _connect(self, address)


    def connect_ex(self, address):
        _check(address)
        return _connect_ex(self, address)


    def getaddrinfo(host, *args, **kwargs):
        _check((host,))
        return _getaddrinfo(host, *args, **kwargs)


    socket.socket.connect, socket.socket.connect_ex = connect, connect_ex
    socket.getaddrinfo = getaddrinfo
    """
)

# Tries the outside world (a public DNS server, a name lookup) and loopback; prints what worked.
PROBE = textwrap.dedent(
    """\
    import socket, threading
    for what, attempt in [
        ("tcp 8.8.8.8:53", lambda: socket.create_connection(("8.8.8.8", 53), timeout=3)),
        ("dns pypi.org", lambda: socket.getaddrinfo("pypi.org", 443)),
        ("udp 1.1.1.1:53", lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).connect(
            ("1.1.1.1", 53))),
    ]:
        try:
            attempt()
            print(f"{what}: reached")
        except OSError as e:
            print(f"{what}: blocked ({e})")
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    threading.Thread(target=lambda: server.accept()[0].sendall(b"pong"), daemon=True).start()
    with socket.create_connection(("127.0.0.1", port), timeout=5) as c:
        print("loopback:", c.recv(4).decode())
    """
)


@functools.cache
def netns_works() -> bool:
    """Whether `unshare -rn` gives a namespace with a working loopback on this machine."""
    if shutil.which("unshare") is None:
        return False
    try:
        done = subprocess.run(
            ["unshare", "-rn", sys.executable, "-c", LO_UP, sys.executable, "-c", "pass"],
            capture_output=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def offline(cmd: list[str], tmp_path: Path, kind: str, **kwargs) -> subprocess.CompletedProcess:
    """Run `cmd` with no network but loopback (`kind`: netns or sockets); output captured."""
    env = dict(kwargs.pop("env", os.environ))
    for name in [k for k in env if k.startswith(("KAGGLE_", "SLEEPDETECT_INPUT_", "PIP_"))]:
        del env[name]
    env["PIP_CONFIG_FILE"] = os.devnull
    if kind == "netns":
        cmd = ["unshare", "-rn", sys.executable, "-c", LO_UP, *cmd]
    else:
        site = tmp_path / "offline_site"
        site.mkdir(exist_ok=True)
        (site / "sitecustomize.py").write_text(BLOCK_SOCKETS)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH")]))
    return subprocess.run(cmd, env=env, capture_output=True, text=True, **kwargs)


def sandbox() -> str:
    return "netns" if netns_works() else "sockets"


@pytest.mark.parametrize("kind", ["netns", "sockets"])
def test_the_sandbox_blocks_the_network_and_keeps_loopback(tmp_path, kind):
    if kind == "netns" and not netns_works():
        pytest.skip("unshare -rn is not allowed on this machine (the sockets sandbox is used)")
    done = offline([sys.executable, "-c", PROBE], tmp_path, kind, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split(":")[0] for line in lines[:3]] == [
        "tcp 8.8.8.8",
        "dns pypi.org",
        "udp 1.1.1.1",
    ]
    assert all(": blocked (" in line for line in lines[:3]), lines
    assert lines[3] == "loopback: pong"
    # a Python the sandboxed one starts is sandboxed too (papermill's kernel, pip)
    child = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {PROBE!r}])"
    done = offline([sys.executable, "-c", child], tmp_path, kind, timeout=60)
    assert done.stdout.count(": blocked (") == 3 and "loopback: pong" in done.stdout


def checkout_copy(dest: Path) -> Path:
    """What `package` needs of the checkout, copied, so nothing is written into this one."""
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", ".ipynb_checkpoints")
    for name in ("src", "notebooks", "params", "kaggle_datasets/templates"):
        shutil.copytree(REPO / name, dest / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, dest / name)
    return dest


def test_every_stage_and_package_run_offline(tmp_path):
    """The tiny demo through papermill, then `package`, offline (about 30 s on 2 cores)."""
    kind = sandbox()
    root = checkout_copy(tmp_path / "checkout")
    data, out = tmp_path / "data", tmp_path / "outputs"
    sleepdetect = [sys.executable, "-m", "sleepdetect"]
    run = offline(
        [*sleepdetect, "run", "params/demo.yaml", f"data.dir={data}", f"output.dir={out}"]
        + TINY_DEMO,
        tmp_path,
        kind,
        cwd=root,
        timeout=600,
    )
    assert run.returncode == 0, f"[{kind}] {run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    assert Experiment(out / "demo").submission("test").is_file()
    assert (Experiment(out / "demo").fold(0) / "model.pt").is_file()

    package = offline(
        [*sleepdetect, "package", "--exp", "demo", f"output.dir={out}"]
        + ["kaggle.username=me", "kaggle.wheels=[]"],
        tmp_path,
        kind,
        cwd=root,
        timeout=300,
    )
    assert package.returncode == 0, f"[{kind}] {package.stdout[-3000:]}\n{package.stderr[-3000:]}"
    assert "not uploaded. The first time, run:" in package.stdout
    built = root / "kaggle_datasets"
    assert list((built / "sleepdetect-code").glob("sleepdetect-*.whl"))
    assert (built / "sleepdetect-weights" / "demo" / "fold0" / "model.pt").is_file()
    assert (built / "sleepdetect-submission" / "kernel-metadata.json").is_file()
