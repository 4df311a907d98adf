"""Bad-input files for the monitor, shared by the parser's unit tests and the streaming tests.

Each case: (name, file bytes, expected records as (kind, reason-prefix)), where kind is
'event' for a scored anomaly and 'quarantine' for a row that could not be scored.
"""

HEADER = b"timestamp,cpu,disk,network\n"
ANOMALY = b"2026-01-05 00:00:00,99,50000000,1"  # far from any cluster the sample makes
NORMAL = b"2026-01-05 00:00:00,23.5,2562056.0,5933743.0"

CASES = [
    ("non-numeric", HEADER + b"2026-01-05 00:00:00,abc,1,1\n", [("quarantine", "non-numeric value for cpu")]),
    ("empty value", HEADER + b"2026-01-05 00:00:00,,1,1\n", [("quarantine", "missing value for cpu")]),
    ("nan", HEADER + b"2026-01-05 00:00:00,NaN,1,1\n", [("quarantine", "non-finite value for cpu")]),
    ("infinite", HEADER + b"2026-01-05 00:00:00,1,inf,1\n", [("quarantine", "non-finite value for disk")]),
    ("huge", HEADER + b"2026-01-05 00:00:00,1,1e999,1\n", [("quarantine", "non-finite value for disk")]),
    ("negative", HEADER + b"2026-01-05 00:00:00,1,1,-5\n", [("quarantine", "network below 0")]),
    ("impossible cpu", HEADER + b"2026-01-05 00:00:00,150,1,1\n", [("quarantine", "cpu above 100")]),
    ("bad timestamp", HEADER + b"not a time,1,1,1\n", [("quarantine", "unreadable timestamp")]),
    (
        "missing column",
        b"timestamp,cpu,disk\n2026-01-05 00:00:00,1,1\n",
        [("quarantine", "header lacks column(s) network")],
    ),
    ("extra field", HEADER + ANOMALY + b",7\n", [("quarantine", "5 fields, header has 4")]),
    ("missing field", HEADER + b"2026-01-05 00:00:00,1,1\n", [("quarantine", "3 fields, header has 4")]),
    ("extra header column", b"timestamp,cpu,disk,network,region\n" + ANOMALY + b",eu\n", [("event", "")]),
    ("reordered header", b"network,disk,timestamp,cpu\n1,50000000,2026-01-05 00:00:00,99\n", [("event", "")]),
    ("header only", HEADER, [("quarantine", "header only, no data rows")]),
    ("empty file", b"", [("quarantine", "empty file")]),
    ("binary file", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), [("quarantine", "binary file")]),
    (
        "line of megabytes",
        HEADER + b"2026-01-05 00:00:00,1,1," + b"9" * 3_000_000 + b"\n",
        [("quarantine", "line too long")],
    ),
    ("invalid utf-8", HEADER + b"2026-01-05 00:00:00,1\xff\xfe,1,1\n", [("quarantine", "invalid UTF-8")]),
    ("blank lines", HEADER + b"\n" + ANOMALY + b"\n", [("quarantine", "blank line"), ("event", "")]),
    ("no trailing newline", HEADER + ANOMALY, [("event", "")]),
    ("crlf line ends", HEADER.replace(b"\n", b"\r\n") + ANOMALY + b"\r\n", [("event", "")]),
]
