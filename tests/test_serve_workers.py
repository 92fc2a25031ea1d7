"""`followup serve --workers N`: N web processes under uvicorn's supervisor sharing one port on PostgreSQL, each
answering authenticated requests; refused on SQLite with one line saying why and what to do instead."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from click.testing import CliRunner
from conftest import ROOT, make_settings

from followup.cli.main import cli
from followup.runtime import build_runtime
from followup.services.tokens import create_token


def test_several_web_processes_on_sqlite_are_refused_naming_why(tmp_path: Path) -> None:
    """`serve --workers 2` on SQLite exits 1 before binding or migrating: PostgreSQL needed, one process on SQLite."""
    result = CliRunner().invoke(
        cli,
        ["--settings", str(ROOT / "settings.toml"), "serve", "--workers", "2", "--no-migrate"],
        obj={},
        env={"FOLLOWUP_DATABASE__URL": f"sqlite:///{tmp_path}/x.db"},
    )
    assert result.exit_code == 1
    assert "--workers 2 needs PostgreSQL" in result.output and "--workers 1" in result.output
    assert "intake page" not in result.output and not (tmp_path / "x.db").exists()


def _children(pid: int) -> list[int]:
    """The processes whose parent is `pid` (from /proc), multiprocessing's resource tracker left out."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            tracker = b"resource_tracker" in (entry / "cmdline").read_bytes()
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid and not tracker:
                found.append(int(entry.name))
    return found


def test_two_web_processes_share_the_port_on_postgresql(pg_database: str) -> None:
    """On PostgreSQL `serve --workers 2 --no-dispatch` runs two web processes under one supervisor on one port;
    authenticated reads are answered; SIGTERM stops them all."""
    rt = build_runtime(make_settings(pg_database))
    token = create_token(rt, "workers-test")[1]
    rt.db.dispose()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "FOLLOWUP_DATABASE__URL": pg_database, "FOLLOWUP_SECURITY__SECRET_KEY": "t" * 40}
    cmd = [sys.executable, "-m", "followup.cli", "serve", "--port", str(port), "--no-dispatch", "--workers", "2"]
    proc = subprocess.Popen(  # noqa: S603 - our own command
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True, text=True
    )
    try:
        deadline = time.monotonic() + 120
        answers: list[int] = []
        while len(answers) < 20 and time.monotonic() < deadline and proc.poll() is None:
            try:
                r = httpx.get(
                    f"http://127.0.0.1:{port}/api/patients?limit=1",
                    headers={"Authorization": f"Bearer {token}"},
                    timeout=5,
                )
                answers.append(r.status_code)
            except httpx.HTTPError:
                time.sleep(0.3)
        assert answers == [200] * 20
        assert len(_children(proc.pid)) == 2  # the two web processes
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            out, _ = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
    assert proc.returncode == 0, out
    assert "web processes 2 on one port" in out
