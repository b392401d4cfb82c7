"""Network ingress of `mediasvc serve`: Storage SCP, study quiet period -> job, Media Creation
Management SCP (PS3.4 Annex S). Runs in its own process (``python -m mediasvc.ingress``),
supervised by the daemon; see docs/service.md ("Network ingress").

Modules, one job each: receive.py (durable writing of received instances), assembler.py
(quiet period -> queued job), scp.py (the pynetdicom AE, association and C-STORE checks),
mcm.py (Media Creation Management), state.py (tables and the snapshot the web console reads).
"""
