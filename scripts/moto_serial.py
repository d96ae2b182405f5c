"""moto_server with one request at a time.

moto's in-memory backends are not thread-safe: under concurrent requests its TransactWriteItems
can crash ("dictionary changed size during iteration") and conditional writes could interleave,
which is not how DynamoDB behaves. This runs the same moto application as `moto_server`, on a
threaded listener (so no connection waits in the backlog), but lets one request into moto at a
time: each operation is then atomic, as DynamoDB's are.

    python scripts/moto_serial.py --host 127.0.0.1 --port 5000
"""

import argparse
import os
import signal
import sys
import threading

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serial(environ, start_response):
        with lock:
            # Materialise the body inside the lock: the whole operation happens under it.
            return list(app(environ, start_response))

    run_simple(args.host, args.port, serial, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
