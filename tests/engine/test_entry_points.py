"""The command and the module boundary: `python -m bot` is imagine-bot; the parent side of the
engine (what the bot imports) never imports torch."""

from __future__ import annotations

import subprocess
import sys


def run_python(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=120)


def test_python_m_bot_is_the_imagine_bot_command() -> None:
    done = run_python("-m", "bot", "local", "a fox --ar 16:0")

    assert done.returncode == 2
    assert "--ar" in done.stderr and "16:0" in done.stderr


def test_the_engine_client_side_does_not_import_torch() -> None:
    modules = "engine.client, engine.jobs, engine.prompt, engine.local, engine.storage, bot.cli"
    done = run_python("-c", f"import sys, {modules}; print('torch' in sys.modules)")

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
