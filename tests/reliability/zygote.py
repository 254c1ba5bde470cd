"""Fork ``medseg`` runs from one process that imported medseg once: a run then starts in milliseconds
instead of the ~5 s that importing torch and MONAI takes on a shared 2-core machine, and is still a
process of its own, killed for real by SIGKILL.

Protocol, one JSON line each way: ``{"run": [argv...], "log": path}`` forks a child running
``medseg ARGV`` with stdout and stderr to `log`, answered by ``{"pid": N}``; ``{"wait": N}`` reaps
child N, answered by ``{"status": S}`` (the exit code, or minus the signal that killed it).
The zygote itself computes nothing with torch before forking, so the children start clean.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

# the slow imports, done once for every run
import medseg.cli.main
import medseg.inference.ensemble
import medseg.inference.runner
import medseg.training.trainer


def _child(argv: list[str], log: str) -> None:
    descriptor = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(descriptor, 1)
    os.dup2(descriptor, 2)
    code = 1
    try:
        code = medseg.cli.main.main(argv)
    except SystemExit as exit:
        code = exit.code if isinstance(exit.code, int) else 1
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def serve() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        if "run" in request:
            pid = os.fork()
            if pid == 0:
                _child(request["run"], request["log"])
            answer = {"pid": pid}
        else:
            _, status = os.waitpid(request["wait"], 0)
            answer = {"status": -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    serve()
