"""`mediasvc mds`: the minimum data set of the studies in the local store, as JSON or CSV, and
its completeness (the mandatory items missing, per study and level)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mediasvc.cli.import_ import add_store_option, default_store
from mediasvc.errors import UsageError
from mediasvc.store import mds_report as rep
from mediasvc.store.index import INDEX, Store
from mediasvc.store.mds_def import load_definition

EXIT_OK, EXIT_PROBLEMS = 0, 1


def register(sub: Any) -> None:
    p = sub.add_parser(
        "mds", help="minimum data set of the stored studies (JSON, CSV, completeness)",
        description="Report the minimum data set (profiles/mds) of the studies in the store: "
        "one object per study with its series and images (JSON), or one row per item per "
        "entity (CSV). --completeness lists the mandatory items missing; exit status 1 "
        "when some are.")
    add_store_option(p)
    p.add_argument("--study-uid", metavar="UID", help="only this Study Instance UID")
    p.add_argument("--format", choices=("json", "csv"), default="json",
                   help="output format (default: json)")
    # Not argparse choices: the languages are those of the definition (data).
    p.add_argument("--lang", metavar="LANG", default="en",
                   help="language of the labels: en (default), fr")
    p.add_argument("--variant", metavar="NAME", default=None,
                   help="whose obligations: the English (en) or French (fr) table; "
                   "default: the --lang")
    p.add_argument("--completeness", action="store_true",
                   help="only the mandatory items missing, per study and level")
    p.add_argument("--definition", type=Path, metavar="FILE",
                   help="MDS definition (default: profiles/mds/mds.toml)")
    p.add_argument("--reextract", action="store_true",
                   help="read the stored files again with the current definition instead of "
                   "the values extracted at import")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    definition = load_definition(args.definition)
    if args.lang not in definition.languages:
        raise UsageError(f"no labels in language {args.lang!r} (languages: "
                         f"{', '.join(definition.languages)})")
    variant = args.variant or (args.lang if args.lang in definition.variants else None)
    if variant is not None and variant != definition.variant:
        definition = load_definition(args.definition, variant)
    root = Path(args.store or default_store())
    if not (root / INDEX).is_file():
        # Store.open would create an empty store: for a report, a wrong path is a usage error.
        raise UsageError(f"{root}: no store here (import media first, or give --store DIR)")
    with Store.open(root) as store:
        studies = rep.studies_from_store(store, args.study_uid,
                                         definition if args.reextract else None)
    report = rep.build_report(studies, definition, args.lang)
    out = sys.stdout
    if args.completeness:
        result = rep.completeness(report)
        if args.format == "json":
            rep.write_json(result, out)
        else:
            rep.write_csv(rep.completeness_rows(result), rep.COMPLETENESS_COLUMNS, out)
        return EXIT_OK if all(s["complete"] for s in result) else EXIT_PROBLEMS
    if args.format == "json":
        rep.write_json(report, out)
    else:
        rep.write_csv(rep.report_rows(report), rep.CSV_COLUMNS, out)
    return EXIT_OK
