"""docs/CLIENT.md's example runs as written, against a real switch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import RunningSwitch

DOC = Path(__file__).resolve().parents[2] / "docs" / "CLIENT.md"


def test_the_documented_example_runs(switch: RunningSwitch, tmp_path: Path) -> None:
    example = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.DOTALL)[0]
    script = tmp_path / "example.py"
    script.write_text(example)
    ran = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path,
                         env={**os.environ, "PAYSWITCH_URL": switch.url,
                              "PAYSWITCH_API_KEY": switch.operator_key})
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.split() == ["['ok',", "'ok']", "2400"]


def test_the_client_loads_nothing_of_the_server() -> None:
    """`pip install payswitch` is the client alone: none of Ray, LMDB or the server's web
    stack may be needed to use it."""
    probe = ("import sys\n"
             "import switch.client as c\n"
             "c.AsyncClient, c.Client, c.new_id(), c.Transfer, c.TransferResult\n"
             "print(sorted(m for m in ('ray', 'lmdb', 'starlette', 'uvicorn', 'persistence',"
             " 'switch.api', 'switch.routing') if m in sys.modules))\n")
    ran = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, cwd=DOC.parents[1])
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.strip() == "[]"
