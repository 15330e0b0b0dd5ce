"""Where the time goes: py-spy samples one service worker under wrk load on ``/api/auth/me``.

    python bench/profile_http.py [--duration 8]

Prints the functions with the most samples (self and inclusive), grouped by package.
"""

from __future__ import annotations

import argparse
import collections
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Any

from _common import free_port, login, process, redis_server, save_result, sessionhub_cmd, wrk
from _common import write_config as _write_config


def run(args: argparse.Namespace) -> dict[str, Any]:
    pyspy = Path(sys.executable).parent / "py-spy"
    with redis_server() as server, tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        cfg = _write_config(Path(tmp), server.url)
        base = f"http://127.0.0.1:{port}"
        with process(sessionhub_cmd(cfg, port, 1), base + "/healthz") as proc:
            cookie = login(base)
            out = Path(tmp) / "stacks.txt"
            load = threading.Thread(
                target=wrk,
                args=(base + "/api/auth/me",),
                kwargs={"duration": args.duration + 2, "connections": 32, "cookie": cookie},
            )
            load.start()
            subprocess.run(
                [str(pyspy), "record", "-p", str(proc.pid), "-d", str(int(args.duration)),
                 "-r", "250", "-f", "raw", "-o", str(out), "--nonblocking"],
                check=True, capture_output=True,
            )  # fmt: skip
            load.join()
            stacks = out.read_text().splitlines()
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in stacks:
        frames, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        names = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].split("/")[-1]
                 + ")" for f in frames.split(";")]  # fmt: skip
        for name in set(names):
            inclusive[name] += n
        own[names[-1]] += n
    result = {
        "samples": total,
        "inclusive": [(k, v / total) for k, v in inclusive.most_common(40)],
        "self": [(k, v / total) for k, v in own.most_common(25)],
    }
    save_result("profile", result)
    return result


def render(r: dict[str, Any]) -> str:
    lines = [f"py-spy, {r['samples']} samples of the worker (idle included)", "", "inclusive:"]
    lines += [f"  {share:6.1%}  {name}" for name, share in r["inclusive"]]
    lines += ["", "self:"]
    lines += [f"  {share:6.1%}  {name}" for name, share in r["self"]]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--duration", type=float, default=8.0)
    print(render(run(p.parse_args())))


if __name__ == "__main__":
    main()
