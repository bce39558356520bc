#!/usr/bin/env python3
"""python-tuf and fwget agree on what the metadata says, for `cargo xtask test`.

Refreshes with tuf.ngclient.Updater from a trusted root against a running `fwrepo serve`, then
looks up every target `fwget show --json` reported (the file given with --expect: a JSON list
of {target, length, sha256, blake3}) and checks that python-tuf finds it in signed metadata
with the same length, sha256 and custom.blake3. Prints one `PASS name` or `FAIL name: reason`
line per check; exits 1 if any failed.
"""

import argparse
import json
import os
import sys

from tuf.ngclient import Updater


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True, help="base URL of a running `fwrepo serve`")
    ap.add_argument("--metadata-dir", required=True, help="client's trusted metadata (fresh)")
    ap.add_argument("--trusted-root", required=True, help="bootstrap root.json")
    ap.add_argument("--expect", required=True, help="JSON list of what fwget reported")
    args = ap.parse_args()

    results = []

    def check(name, fn):
        try:
            fn()
            results.append(True)
            print(f"PASS {name}", flush=True)
        except Exception as e:  # noqa: BLE001 - every failure is a reported check
            results.append(False)
            print(f"FAIL {name}: {type(e).__name__}: {e}", flush=True)

    os.makedirs(args.metadata_dir, exist_ok=True)
    with open(args.trusted_root, "rb") as f:
        bootstrap = f.read()
    with open(args.expect, "rb") as f:
        expected = json.load(f)
    base = args.server.rstrip("/")
    updater = Updater(
        metadata_dir=args.metadata_dir,
        metadata_base_url=f"{base}/metadata/",
        target_base_url=f"{base}/targets/",
        bootstrap=bootstrap,
    )
    check("refresh", updater.refresh)

    def some_targets():
        if not expected:
            raise AssertionError("fwget reported no targets")
    check("fwget reported targets", some_targets)

    for want in expected:
        def same(want=want):
            info = updater.get_targetinfo(want["target"])
            if info is None:
                raise AssertionError("python-tuf finds no such signed target")
            got = {
                "length": info.length,
                "sha256": info.hashes.get("sha256"),
                "blake3": info.unrecognized_fields.get("custom", {}).get("blake3"),
            }
            for key, value in got.items():
                if value != want[key]:
                    raise AssertionError(f"{key}: python-tuf reads {value!r}, fwget {want[key]!r}")
        check(f"agree on {want['target']}", same)

    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
