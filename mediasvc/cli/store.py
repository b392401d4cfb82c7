"""`mediasvc store list|check|forward`: what the local store holds, its consistency, and
sending what a PACS did not get yet."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict
from typing import Any

from mediasvc.cli.import_ import add_store_option, default_store
from mediasvc.store.forward import Destination, forward, raise_if_down
from mediasvc.store.index import Store


def register(sub: Any) -> None:
    p = sub.add_parser("store", help="list, check the local store; forward queued instances")
    ssub = p.add_subparsers(dest="store_command", metavar="ACTION", required=True)

    ls = ssub.add_parser("list", help="patients, studies and series in the store")
    add_store_option(ls)
    ls.add_argument("--patient-id", help="only this Patient ID")
    ls.add_argument("--study-uid", help="only this Study Instance UID")
    ls.add_argument("--json", action="store_true", help="JSON, with series and instances")
    ls.set_defaults(func=run_list)

    ck = ssub.add_parser("check", help="every row has its file (checksum) and every file a row")
    add_store_option(ck)
    ck.add_argument("--json", action="store_true")
    ck.set_defaults(func=run_check)

    fw = ssub.add_parser("forward", help="send instances still queued for a PACS")
    fw.add_argument("destination", metavar="AE@HOST:PORT")
    add_store_option(fw)
    fw.add_argument("--retries", type=int, default=3)
    fw.add_argument("--json", action="store_true")
    fw.set_defaults(func=run_forward)


def run_list(args: argparse.Namespace) -> int:
    with Store.open(args.store or default_store()) as store:
        studies = store.studies(study_uid=args.study_uid, patient_id=args.patient_id)
        if args.json:
            out = []
            for st in studies:
                entry = asdict(st)
                entry["series"] = []
                for se in store.series_of(st.study_uid):
                    s = asdict(se)
                    s["instances"] = [
                        {"sop_instance_uid": i.sop_uid, "sop_class_uid": i.sop_class_uid,
                         "number": i.number, "path": str(i.path), "checksum": i.checksum,
                         "size": i.size, "conflict": i.conflict, "origin": asdict(i.origin)}
                        for i in store.instances_of(se.series_uid)]
                    entry["series"].append(s)
                out.append(entry)
            sys.stdout.write(json.dumps(out, indent=2))
            sys.stdout.write("\n")
            return 0
        if not studies:
            print(f"{store.root}: no studies" + (" matching" if args.patient_id or
                                                 args.study_uid else ""))
            return 0
        for st in studies:
            print(f"{st.patient_id}  {st.patient_name}  {st.study_date}  {st.study_uid}  "
                  f"{'/'.join(st.modalities)}  {st.n_series} series, {st.n_instances} instances"
                  f"  {st.description}")
            for se in store.series_of(st.study_uid):
                number = "" if se.number is None else se.number
                print(f"    series {number} {se.modality} {se.series_uid}: "
                      f"{se.n_instances} instances  {se.description}")
    return 0


def run_check(args: argparse.Namespace) -> int:
    with Store.open(args.store or default_store()) as store:
        problems = store.check()
        n = store.count_instances()
        if args.json:
            sys.stdout.write(json.dumps({"store": str(store.root), "instances": n,
                                         "problems": problems}, indent=2))
            sys.stdout.write("\n")
        else:
            for p in problems:
                print(p)
            print(f"{store.root}: {n} instances, {len(problems)} problem(s)")
    return 1 if problems else 0


def run_forward(args: argparse.Namespace) -> int:
    dest = Destination.parse(args.destination)
    with Store.open(args.store or default_store()) as store:
        report = forward(store, dest, None, retries=args.retries)
        if args.json:
            sys.stdout.write(json.dumps(report.to_dict(), indent=2))
            sys.stdout.write("\n")
        else:
            print(f"forward to {report.destination}: {len(report.sent)} sent, "
                  f"{len(report.failed)} failed, {report.pending} pending")
        raise_if_down(report, str(store.root))
    return 0 if report.ok else 1
