"""Write requirements.lock: every distribution `pip install -e '.[test]'` resolves to, pinned,
with the sha256 of the file pip would install, for this Python and platform (named in the
header, which the Makefile compares before using the lock).

    .venv/bin/python tools/lock.py        (make lock)
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def tag() -> str:
    """What the lock is good for: the interpreter's version and the platform."""
    return f"cp{sys.version_info.major}{sys.version_info.minor}-{sysconfig.get_platform()}"


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed",
             "--quiet", "--report", str(report), "-e", f"{ROOT}[test]"],
            check=True,
        )  # fmt: skip
        resolved = json.loads(report.read_text())["install"]
    lines = [
        f"# lock: {tag()}",
        "# Made by tools/lock.py (make lock) from pyproject.toml; used by make setup.",
    ]
    for item in sorted(resolved, key=lambda i: i["metadata"]["name"].lower()):
        info = item["download_info"]
        if info.get("dir_info") is not None:  # pgsched itself, editable
            continue
        digest = info["archive_info"]["hashes"]["sha256"]
        meta = item["metadata"]
        lines.append(f"{meta['name']}=={meta['version']} --hash=sha256:{digest}")
    (ROOT / "requirements.lock").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
