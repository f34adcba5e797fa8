"""`wastestream import FILE --mapping MAP.yaml`: validate a scale-house export, send the good rows.

Exit status: 0 imported (rejected rows, if any, are listed and written to the rejects CSV);
1 the file, the mapping or the pipeline could not be used (nothing or not everything sent);
2 usage.
"""

from __future__ import annotations

import csv
import sys
import uuid
from datetime import UTC, datetime
from pathlib import Path

from wastestream.foundation import cliutil, logs
from wastestream.importer.convert import Reject, Ticket, convert_row, number
from wastestream.importer.mapping import MappingError, load_mapping
from wastestream.importer.rows import ExportError, read_rows


def write_rejects(path: Path, rejects: list[Reject]) -> None:
    headers = list(dict.fromkeys(k for r in rejects for k in r.raw))  # the export's order
    with path.open("w", encoding="utf-8-sig", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["row", "column", "reason", *headers])
        for r in sorted(rejects, key=lambda r: r.row):
            out.writerow([r.row, r.column, r.reason, *(r.raw.get(h, "") for h in headers)])


def main(argv: list[str] | None = None) -> int:
    parser = cliutil.parser("wastestream import", __doc__.splitlines()[0])
    parser.add_argument("file", type=Path, help="CSV (UTF-8 or GB18030) or .xlsx export")
    parser.add_argument("--mapping", type=Path, required=True, help="column mapping YAML")
    parser.add_argument("--rejects", type=Path, help="rejected rows CSV (default FILE.rejects.csv)")
    parser.add_argument("--dry-run", action="store_true", help="validate only, send nothing")
    parser.add_argument("--confirm-timeout", type=float, default=15.0, help="seconds before a re-send")
    cliutil.add_log_level(parser)
    args = parser.parse_args(argv)
    logs.configure(args.log_level)
    now = datetime.now(UTC)
    try:
        mapping = load_mapping(args.mapping)
        tickets: list[Ticket] = []
        rejects: list[Reject] = []
        read = 0
        for n, row in read_rows(args.file):
            read += 1
            result = convert_row(n, row, mapping, now)
            (tickets if isinstance(result, Ticket) else rejects).append(result)  # type: ignore[arg-type]
    except (MappingError, ExportError, OSError) as exc:
        print(f"import: {exc}", file=sys.stderr)
        return 1
    events, late = number(tickets, mapping.timezone)
    rejects += late
    rejects_path = args.rejects or args.file.with_name(args.file.name + ".rejects.csv")
    if rejects:
        write_rejects(rejects_path, rejects)
    print(f"{args.file}: {read} rows read, {len(events)} valid, {len(rejects)} rejected")
    for r in sorted(rejects, key=lambda r: r.row)[:20]:
        print(f"  row {r.row}: {r.column + ': ' if r.column else ''}{r.reason}")
    if len(rejects) > 20:
        print(f"  ... {len(rejects) - 20} more")
    if rejects:
        print(f"rejected rows with reasons: {rejects_path}")
    if args.dry_run or not events:
        return 0
    from wastestream.foundation.settings import load_settings
    from wastestream.importer.send import Sender, SendError

    try:
        with Sender(load_settings(), f"ws-import-{uuid.uuid4().hex[:8]}", args.confirm_timeout) as sender:
            sender.connect({e.site_id for e in events})
            step = max(len(events) // 10, 1)

            def progress(done: int) -> None:
                if done % step == 0 or done == len(events):
                    print(f"  {done}/{len(events)} confirmed by the pipeline", flush=True)

            sender.send_all(events, progress)
    except (SendError, OSError) as exc:
        print(f"import: {exc}", file=sys.stderr)
        return 1
    print(f"imported {len(events)} tickets (confirmed by the pipeline; re-imports count once)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
