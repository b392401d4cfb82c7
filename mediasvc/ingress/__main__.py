"""The ingress process: ``python -m mediasvc.ingress --parent PID [--config FILE] [--root DIR]``.

Started and supervised by the daemon (service/daemon.py) when the configuration has an
[ingress] table, for the reason runners are processes: pynetdicom and pydicom stay out of
the daemon, a crash or a memory blow-up in a decoder costs this process (restarted by the
daemon), not the service. It dies with the daemon (PR_SET_PDEATHSIG). Every second it writes
run/ingress.json (ports, open associations, counts, time): the daemon's health check and the
web console read it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from pathlib import Path

from mediasvc.durable import atomic_write
from mediasvc.errors import ConfigError, MediasvcError
from mediasvc.jobqueue import JobQueue
from mediasvc.log import setup_logging
from mediasvc.service.config import ServiceConfig, load_service_config
from mediasvc.service.runner import die_with_parent

from .assembler import Assembler
from .receive import Layout, Spooler

log = logging.getLogger("mediasvc.ingress")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mediasvc.ingress")
    ap.add_argument("--config", type=Path)
    ap.add_argument("--root", type=Path)
    ap.add_argument("--parent", type=int)
    ap.add_argument("-v", "--verbose", action="count", default=0)
    args = ap.parse_args(argv)
    if args.parent:
        die_with_parent(args.parent)
    setup_logging(args.verbose)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        return serve(load_service_config(args.config, args.root), stop)
    except MediasvcError as exc:
        log.error("ingress: %s", exc)
        return 2


def serve(cfg: ServiceConfig, stop: threading.Event) -> int:
    if cfg.ingress is None:
        raise ConfigError(cfg.source or "<embedded default>", "ingress", "", "no [ingress]")
    layout = Layout(cfg.ingress_dir)
    layout.prepare()
    if layout.base.stat().st_dev != cfg.spool.stat().st_dev:
        raise ConfigError(cfg.source or "<embedded default>", "paths.spool", str(cfg.spool),
                          f"must be on the filesystem of {layout.base} (a received study "
                          "becomes a job by rename)")
    q = JobQueue(cfg.db, max_interruptions=cfg.max_interruptions)
    spooler = Spooler(layout)
    try:
        replayed = spooler.recover()
    except OSError as exc:
        raise MediasvcError(f"cannot recover the ingress journals in {layout.journal}: "
                            f"{exc}") from exc
    if replayed:
        log.info("ingress: %d acknowledged instance(s) written again from the journals",
                 replayed)
    try:
        return _serve(cfg, stop, q, layout, spooler)
    finally:
        spooler.close()


def _serve(cfg: ServiceConfig, stop: threading.Event, q: JobQueue, layout: Layout,
           spooler: Spooler) -> int:
    from .scp import IngressAE  # pynetdicom: loaded once the configuration is known good

    assert cfg.ingress is not None
    assembler = Assembler(cfg, q, spooler)
    assembler.recover()
    mcm_handlers = None
    if cfg.ingress.mcm is not None:
        from .mcm import MediaCreationSCP

        mcm_handlers = MediaCreationSCP(cfg, q, spooler).handlers()
    scp = IngressAE(cfg.ingress, spooler, assembler, mcm_handlers)
    try:
        ports = scp.start()
    except OSError as exc:
        raise MediasvcError(f"cannot listen on {cfg.ingress.bind}:{cfg.ingress.port}: "
                            f"{exc.strerror or exc}") from exc
    log.info("ingress listening on %s port(s) %s as %s (%d route(s)%s)", cfg.ingress.bind,
             ",".join(map(str, ports)), cfg.ingress.ae_title, len(cfg.ingress.routes),
             ", media creation management" if cfg.ingress.mcm else "")
    status_file = cfg.run / "ingress.json"
    started = time.time()
    last_status = 0.0
    last_sweep = 0.0
    while not stop.wait(0.2):
        try:
            assembler.tick()
        except MediasvcError as exc:   # the queue is locked or the disk full: next tick
            log.warning("ingress: cannot make a job of a quiet study yet: %s", exc)
        now = time.monotonic()
        if now - last_status >= 1.0:
            last_status = now
            health = {"pid": os.getpid(), "started": started, "updated": time.time(),
                      "ae_title": cfg.ingress.ae_title, "bind": cfg.ingress.bind,
                      "waiting_studies": len(assembler.last), "jobs_made": assembler.jobs_made,
                      **scp.health()}
            try:
                atomic_write(status_file, json.dumps(health).encode())
            except OSError as exc:   # the daemon's health check will notice the silence
                log.warning("cannot write %s: %s", status_file, exc)
        if cfg.ingress.mcm is not None and now - last_sweep >= 600:
            last_sweep = now
            _sweep_held(layout, cfg.ingress.mcm.hold_hours)
    log.info("ingress stopping")
    scp.stop()
    return 0


def _sweep_held(layout: Layout, hours: float) -> None:
    """Held instances (MCM) older than ``hold_hours`` go: requests reference fresh sends."""
    limit = time.time() - hours * 3600
    n = 0
    for p in layout.held.glob("*.dcm"):
        try:
            if p.stat().st_mtime < limit:
                p.unlink()
                n += 1
        except FileNotFoundError:
            continue
    if n:
        log.info("removed %d held instance(s) older than %.0f h", n, hours)


if __name__ == "__main__":
    sys.exit(main())
