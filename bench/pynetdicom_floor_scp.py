#!/usr/bin/env python3
"""A pynetdicom Storage SCP that acknowledges every C-STORE at once and writes nothing:
the floor of any SCP built on pynetdicom, one contender of bench/bench_ingest.py.

    python bench/pynetdicom_floor_scp.py PORT [--tuned] [--processes N]

--tuned: with the knobs mediasvc's SCP sets (mediasvc/ingress/scp.py: no "standard" log
handlers, the DUL loop delay), i.e. the floor of mediasvc itself. --processes N: N processes
accept on the same port (SO_REUSEPORT; the kernel spreads the associations), the most a
multi-process listener could gain with parallel senders.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import socket
from typing import Any

from pynetdicom import AE, AllStoragePresentationContexts, _config, evt
from pynetdicom.transport import ThreadedAssociationServer

DUL_LOOP_DELAY = 0.0003   # as mediasvc/ingress/scp.py (not imported: no mediasvc needed)


class ReusePortServer(ThreadedAssociationServer):
    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        super().server_bind()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--tuned", action="store_true")
    ap.add_argument("--processes", type=int, default=1)
    args = ap.parse_args()
    if args.tuned:
        _config.LOG_HANDLER_LEVEL = "none"
    for _ in range(args.processes - 1):
        if os.fork() == 0:
            ctypes.CDLL(None).prctl(1, signal.SIGTERM)   # PR_SET_PDEATHSIG: die with the parent
            break
    ae = AE("FLOOR")
    for c in AllStoragePresentationContexts:
        ae.add_supported_context(c.abstract_syntax, ["1.2.840.10008.1.2.1",
                                                      "1.2.840.10008.1.2"])
    ae.maximum_pdu_size = 262144
    ae.require_called_aet = False

    def fast(event: Any) -> None:
        event.assoc.dul._run_loop_delay = DUL_LOOP_DELAY

    handlers: list[Any] = [(evt.EVT_C_STORE, lambda e: 0)]
    if args.tuned:
        handlers.append((evt.EVT_CONN_OPEN, fast))
    server = ae.make_server(("127.0.0.1", args.port), evt_handlers=handlers,
                            server_class=ReusePortServer if args.processes > 1 else None)
    server.serve_forever()


if __name__ == "__main__":
    main()
