#!/usr/bin/env python3
"""A pynetdicom Storage SCP that acknowledges every C-STORE at once and writes nothing:
the floor of any SCP built on pynetdicom, one contender of bench/bench_ingest.py.

    python bench/pynetdicom_floor_scp.py PORT
"""

from __future__ import annotations

import sys

from pynetdicom import AE, AllStoragePresentationContexts, evt


def main(port: int) -> None:
    ae = AE("FLOOR")
    for c in AllStoragePresentationContexts:
        ae.add_supported_context(c.abstract_syntax, ["1.2.840.10008.1.2.1",
                                                      "1.2.840.10008.1.2"])
    ae.maximum_pdu_size = 262144
    ae.require_called_aet = False
    ae.start_server(("127.0.0.1", port), evt_handlers=[(evt.EVT_C_STORE, lambda e: 0)])


if __name__ == "__main__":
    main(int(sys.argv[1]))
