"""``plasgate-nb simulator --smpp-port``: a subprocess serving SMPP, bound with our client, stopped by SIGINT."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys

import httpx

from plasgate_nb.smpp import SmppClient
from plasgate_nb.smpp.receipts import Receipt

ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def start(*options: str) -> subprocess.Popen[str]:
    """Start ``plasgate-nb simulator`` with ``options`` on an ephemeral HTTP port."""
    return subprocess.Popen(
        [sys.executable, "-m", "plasgate_nb.cli", "simulator", "--port", "0", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def banner(proc: subprocess.Popen[str]) -> str:
    """Read the start banner up to its last line."""
    lines = []
    while not lines or not lines[-1].startswith("Press Ctrl-C"):
        line = proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise AssertionError(f"simulator exited early: {''.join(lines)} {proc.stderr.read()}")  # type: ignore[union-attr]
        lines.append(line)
    return "".join(lines)


def stop(proc: subprocess.Popen[str]) -> str:
    """SIGINT the simulator and return the rest of its output (kill it if it does not stop)."""
    try:
        proc.send_signal(signal.SIGINT)
        out, _err = proc.communicate(timeout=15)
        return out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_serves_smpp_on_an_ephemeral_port_until_sigint() -> None:
    proc = start("--smpp-port", "0", "--seed", "2", "--clock-speed", "200")
    try:
        text = banner(proc)
        found = re.search(r"SMPP:\s+(\S+):(\d+)\s+system_id=(\S+) password=(\S+)", text)
        assert found is not None, text
        host, port, system_id, password = found.group(1), int(found.group(2)), found.group(3), found.group(4)
        assert host == "127.0.0.1" and port > 0
        url = re.search(r"listening on (\S+)", text).group(1)  # type: ignore[union-attr]
        admin = re.search(r"header (X-Sim-Admin): (\S+)\)", text)
        assert admin is not None and int(url.rsplit(":", 1)[1]) != port
        with SmppClient(host=host, port=port, system_id=system_id, password=password, response_timeout=5) as client:
            result = client.submit({"to": "85512345001", "text": "Hello over SMPP", "sender": "SMS Info"})
            assert result.outcome == "accepted" and result.message_id
            receipts = [e for e in client.events(count=1, timeout=10) if isinstance(e, Receipt)]
        assert receipts and receipts[0].message_id == result.message_id
        answer = httpx.get(f"{url}/_sim/records", headers={admin.group(1): admin.group(2)}, trust_env=False)
        records = [json.loads(line) for line in answer.text.splitlines() if line]
        assert [(r["route"], r["to"], r["message_id"]) for r in records] == [("smpp", "85512345001", result.message_id)]
        out = stop(proc)
        assert proc.returncode == 0 and "stopped" in out
        with socket.socket() as probe:  # the SMPP port is closed with the simulator
            assert probe.connect_ex((host, port)) != 0
    finally:
        if proc.poll() is None:
            stop(proc)


def test_cli_without_smpp_port_serves_no_smpp_and_a_busy_port_fails() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        proc = start("--smpp-port", str(taken))
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 2 and "did not start" in err and "Press Ctrl-C" not in out
    proc = start()
    try:
        assert "SMPP:" not in banner(proc)
    finally:
        assert "stopped" in stop(proc) and proc.returncode == 0
    bad = start("--smpp-port", "70000")
    _out, err = bad.communicate(timeout=30)
    assert bad.returncode == 2 and "--smpp-port" in err
