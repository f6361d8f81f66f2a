"""`python -m ecomrec.serve [--port 8000] [--log-level info] [--workers N]`: the API on 127.0.0.1 (`make serve`).

It reads $ECOMREC_PROFILE, $ECOMREC_ARTIFACT_DIR and $ECOMREC_ENCODER (see `api.app_from_env`) and runs
`api.server_command`, the same uvicorn command that `make bench` loads: one worker process per CPU core
unless --workers says otherwise.
"""

import argparse
import os

from ecomrec.serve.api import server_command, usable_cores


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ecomrec.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--workers", type=int, default=usable_cores(),
                        help="worker processes, each answering one request at a time (default: one per core)")
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error("--workers must be positive")
    command = server_command(args.port, args.log_level, args.workers)
    os.execv(command[0], command)  # uvicorn replaces this process


if __name__ == "__main__":
    main()
