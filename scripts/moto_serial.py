"""moto_server with one request at a time.

moto's in-memory backends are not thread-safe: under concurrent requests its TransactWriteItems
can crash ("dictionary changed size during iteration") and conditional writes could interleave,
which is not how DynamoDB behaves. This runs the same moto application as `moto_server`, on a
threaded listener (so no connection waits in the backlog), but lets one request into moto at a
time: each operation is then atomic, as DynamoDB's are.

    python scripts/moto_serial.py --host 127.0.0.1 --port 5000

It also makes moto's TransactWriteItems back up each table once per transaction instead of once
per item: moto deep-copies the whole table for every item, so a 100-item transaction on a table of
1,000 items copied 100,000 items (1.4 s), which no real DynamoDB cost resembles.

And it stops moto from keeping every model object it ever made. moto appends each instance of its
models (every DynamoDB item, every table) to a class-level list for its dashboard, which this
server never shows, so nothing is ever freed: every transaction's backup copy of a table stays,
about 0.5 MB per 100-item transaction on a 500-item table. Over a whole test run moto grew to
several GB, and its garbage collector, walking all of it, stalled requests for seconds late in
the run (the outbox outage test, the last to run, then missed its window).
"""

import argparse
import copy
import os
import signal
import sys
import threading
import types

from werkzeug.serving import run_simple

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)


def back_up_each_table_once() -> None:
    """Wrap the backend's transact_write_items so that, during one call, deep-copying the same
    Table again returns the first copy. The backup means the same: the table as it was before
    the transaction. Safe because requests reach moto one at a time."""
    import moto.dynamodb.models as models

    original = models.DynamoDBBackend.transact_write_items

    def transact_write_items(self, transact_items):
        copies = {}

        def deepcopy(obj, *args, **kwargs):
            if isinstance(obj, models.Table):
                if id(obj) not in copies:
                    copies[id(obj)] = copy.deepcopy(obj, *args, **kwargs)
                return copies[id(obj)]
            return copy.deepcopy(obj, *args, **kwargs)

        models.copy = types.SimpleNamespace(deepcopy=deepcopy)
        try:
            return original(self, transact_items)
        finally:
            models.copy = copy

    models.DynamoDBBackend.transact_write_items = transact_write_items


def track_no_instances() -> None:
    """Models are made as before, minus the append to `instances_tracked`."""
    from moto.core.common_models import BaseModel

    def __new__(cls, *args, **kwargs):
        return super(BaseModel, cls).__new__(cls)

    BaseModel.__new__ = staticmethod(__new__)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    os.environ.setdefault("MOTO_PORT", str(args.port))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    back_up_each_table_once()
    track_no_instances()

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()

    def serial(environ, start_response):
        with lock:
            # Materialise the body inside the lock: the whole operation happens under it.
            return list(app(environ, start_response))

    run_simple(args.host, args.port, serial, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
