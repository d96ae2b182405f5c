"""moto_server with one request at a time.

moto's in-memory backends are not thread-safe: under concurrent requests its TransactWriteItems
can crash ("dictionary changed size during iteration") and conditional writes could interleave,
which is not how DynamoDB behaves. This runs the same moto application as `moto_server`, on a
threaded listener (so no connection waits in the backlog), but lets one request into moto at a
time: each operation is then atomic, as DynamoDB's are.

    python scripts/moto_serial.py --host 127.0.0.1 --port 5000

It also makes moto's TransactWriteItems save only the items it names instead of the tables: moto
deep-copies the whole table for every item, so a 100-item transaction on a table of 1,000 items
copied 100,000 items (1.4 s), and every create copied the whole reservations table, which no
real DynamoDB cost resembles.

And it stops moto from keeping every model object it ever made. moto appends each instance of its
models (every DynamoDB item, every table) to a class-level list for its dashboard, which this
server never shows, so nothing is ever freed: every transaction's backup copy of a table stays,
about 0.5 MB per 100-item transaction on a 500-item table. Over a whole test run moto grew to
several GB, and its garbage collector, walking all of it, stalled requests for seconds late in
the run (the outbox outage test, the last to run, then missed its window).

`GET /_serial/counts` answers the requests served so far by operation (`X-Amz-Target`) as JSON,
for the benchmarks' store requests per operation (`./run_local.sh bench-rush`).
"""

import argparse
import copy
import json
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


def undo_items_not_tables() -> None:
    """Make moto's TransactWriteItems save, before it writes, only the items the transaction
    names, and put them back if it is cancelled. moto deep-copies every table a transaction
    touches, so each create (one transaction on the reservations table) copied the whole table:
    quadratic in the table's size, about 0.3 s per create once a sell-out had written 20,000
    items, which no real DynamoDB cost resembles. The outcome is the same: on a cancel every
    item is as it was before the transaction. Safe because requests reach moto one at a time."""
    import moto.dynamodb.models as models
    from moto.dynamodb.models.dynamo_type import DynamoType

    original = models.DynamoDBBackend.transact_write_items

    def saved_items(backend, transact_items):
        saved = []
        for entry in transact_items:
            for op in entry.values():
                table = backend.tables.get(op.get("TableName")) if isinstance(op, dict) else None
                attrs = (op.get("Key") or op.get("Item")) if table is not None else None
                try:
                    hash_key = DynamoType(attrs[table.hash_key_attr])
                    range_key = (
                        DynamoType(attrs[table.range_key_attr]) if table.range_key_attr else None
                    )
                    current = table.get_item(hash_key, range_key)
                except Exception:  # noqa: BLE001 - moto itself rejects the malformed entry
                    continue
                saved.append((table, hash_key, range_key, copy.deepcopy(current)))
        return saved

    def restore(saved):
        # Newest first, so that the oldest copy of an item named twice is the one that stays.
        for table, hash_key, range_key, item in reversed(saved):
            if range_key is not None:
                rows = table.items[hash_key]
                if item is None:
                    rows.pop(range_key, None)
                else:
                    rows[range_key] = item
            elif item is None:
                table.items.pop(hash_key, None)
            else:
                table.items[hash_key] = item

    def transact_write_items(self, transact_items):
        saved = saved_items(self, transact_items)
        # moto's own backup becomes the live table, so its rollback assigns a table to itself.
        models.copy = types.SimpleNamespace(
            deepcopy=lambda obj, *a, **k: obj
            if isinstance(obj, models.Table)
            else copy.deepcopy(obj, *a, **k)
        )
        try:
            return original(self, transact_items)
        except BaseException:
            restore(saved)
            raise
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
    undo_items_not_tables()
    track_no_instances()

    app = DomainDispatcherApplication(create_backend_app)
    lock = threading.Lock()
    # Requests by operation (`X-Amz-Target`, e.g. DynamoDB_20120810.TransactWriteItems), for the
    # benchmarks' store requests per operation: GET /_serial/counts answers them as JSON.
    counts = {}

    def serial(environ, start_response):
        if environ.get("PATH_INFO") == "/_serial/counts":
            with lock:
                body = json.dumps(counts).encode()
            start_response("200 OK", [("Content-Type", "application/json"),
                                      ("Content-Length", str(len(body)))])
            return [body]
        target = environ.get("HTTP_X_AMZ_TARGET") or environ.get("REQUEST_METHOD", "?")
        with lock:
            counts[target] = counts.get(target, 0) + 1
            # Materialise the body inside the lock: the whole operation happens under it.
            return list(app(environ, start_response))

    run_simple(args.host, args.port, serial, threaded=True, request_handler=MotoRequestHandler)


if __name__ == "__main__":
    main()
