"""`serve` on every interface answers to the names a browser on the LAN uses, and to no other."""

from __future__ import annotations

import http.client
import os
import socket
import subprocess
import sys
from pathlib import Path

from mmsite.lan import default_allowed_hosts, machine_addresses
from tests.conftest import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent


def status_for_host(port: int, host: str) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.request("GET", "/", headers={"Host": f"{host}:{port}"})
        return connection.getresponse().status
    finally:
        connection.close()


def test_listening_on_every_interface_allows_this_machine_s_names(tmp_path):
    port = free_port()
    env = {**os.environ, "MM_DATA_DIR": str(tmp_path), "MM_HOST": "0.0.0.0", "MM_PORT": str(port),
           "MM_MODEL_ROOTS": "", "MM_COMFYUI_PATH": "", "MM_ALLOWED_HOSTS": "",
           "DJANGO_SETTINGS_MODULE": "mmsite.settings"}  # fmt: skip
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    log = tmp_path / "serve.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "serve", "--no-worker"], cwd=ROOT, env=env, stdout=out, stderr=out
        )
    try:
        wait_for_port(port, process, log)
        names = [socket.gethostname(), f"{socket.gethostname()}.local", *machine_addresses()[:1]]
        for name in names:
            assert status_for_host(port, name) == 302, name  # to the login page
        assert status_for_host(port, "attacker.example") == 400
    finally:
        process.terminate()
        process.wait(timeout=15)
    for address in machine_addresses():
        if ":" not in address:
            assert f"on your network at http://{address}:{port}/" in log.read_text()


def test_a_given_listen_address_is_the_only_other_host():
    assert default_allowed_hosts("192.168.1.20") == ["127.0.0.1", "localhost", "[::1]", "192.168.1.20"]
