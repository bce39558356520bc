#!/usr/bin/env python3
"""python-tuf client against an `fwrepo export` directory or a running `fwrepo serve`, for
`cargo xtask test`.

With --repo it serves the export over HTTP on 127.0.0.1 (port chosen by the kernel, in a thread
of this process); with --server it talks to fwrepo itself, sending --token as a bearer token
through a custom fetcher. It refreshes with tuf.ngclient.Updater from a trusted root, downloads targets and checks
them. Prints one `PASS name` or `FAIL name: reason` line per check; exits 1 if any failed.
The metadata dir persists between runs, so a second run follows root rotations.
"""

import argparse
import functools
import hashlib
import http.server
import json
import os
import sys
import threading
import urllib.error
import urllib.request

from tuf.api.exceptions import DownloadHTTPError
from tuf.ngclient import FetcherInterface, Updater


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class BearerFetcher(FetcherInterface):
    """Fetches with the standard library, adding `Authorization: Bearer` when given a token:
    fwrepo serves metadata to anyone but target bytes only to entitled clients."""

    def __init__(self, token=None, timeout=30):
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.timeout = timeout

    def _fetch(self, url):
        request = urllib.request.Request(url, headers=self.headers)
        try:
            response = urllib.request.urlopen(request, timeout=self.timeout)
        except urllib.error.HTTPError as e:
            raise DownloadHTTPError(f"HTTP error {e.code} for {url}", e.code) from e
        return self._chunks(response)

    @staticmethod
    def _chunks(response):
        with response:
            while True:
                chunk = response.read(65536)
                if not chunk:
                    return
                yield chunk


def serve(directory):
    handler = functools.partial(QuietHandler, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", help="fwrepo export directory, served here over HTTP")
    ap.add_argument("--server", help="base URL of a running `fwrepo serve` instead of --repo")
    ap.add_argument("--token", help="bearer token sent with every request (gated targets)")
    ap.add_argument("--denied", action="append", default=[], help="target path whose download must get HTTP 401")
    ap.add_argument("--metadata-dir", required=True, help="client's trusted metadata (persisted)")
    ap.add_argument("--trusted-root", help="bootstrap root.json when the metadata dir has none")
    ap.add_argument("--target-dir", required=True)
    ap.add_argument("--target", action="append", default=[], help="target path to fetch and verify")
    ap.add_argument("--tampered", action="append", default=[], help="target path whose bytes were altered")
    ap.add_argument("--expect-root-version", type=int)
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
    os.makedirs(args.target_dir, exist_ok=True)
    root_json = os.path.join(args.metadata_dir, "root.json")
    # First run: bootstrap from the root shipped out of band; later runs trust the persisted
    # (possibly rotated) root in the metadata dir.
    bootstrap = None
    if not os.path.exists(root_json):
        with open(args.trusted_root, "rb") as f:
            bootstrap = f.read()

    server = None
    if args.server:
        base = args.server.rstrip("/")
    else:
        server = serve(args.repo)
        base = f"http://127.0.0.1:{server.server_address[1]}"
    updater = Updater(
        metadata_dir=args.metadata_dir,
        metadata_base_url=f"{base}/metadata/",
        target_dir=args.target_dir,
        target_base_url=f"{base}/targets/",
        bootstrap=bootstrap,
        fetcher=BearerFetcher(args.token),
    )
    check("refresh", updater.refresh)

    if args.expect_root_version is not None:
        def root_version():
            with open(root_json, "rb") as f:
                version = json.load(f)["signed"]["version"]
            if version != args.expect_root_version:
                raise AssertionError(f"trusted root is v{version}, expected v{args.expect_root_version}")
        check(f"trusted root is v{args.expect_root_version}", root_version)

    for path in args.target:
        def fetch(path=path):
            info = updater.get_targetinfo(path)
            if info is None:
                raise AssertionError("not found in signed targets")
            custom = info.unrecognized_fields.get("custom", {})
            if len(custom.get("blake3", "")) != 64:
                raise AssertionError(f"custom.blake3 missing: {custom}")
            local = updater.download_target(info, os.path.join(args.target_dir, path.replace("/", "_")))
            with open(local, "rb") as f:
                data = f.read()
            if len(data) != info.length or hashlib.sha256(data).hexdigest() != info.hashes["sha256"]:
                raise AssertionError("downloaded bytes do not match the signed length and sha256")
        check(f"download {path}", fetch)

    for path in args.tampered:
        def refuse(path=path):
            info = updater.get_targetinfo(path)
            if info is None:
                raise AssertionError("not found in signed targets")
            try:
                updater.download_target(info, os.path.join(args.target_dir, "tampered_" + path.replace("/", "_")))
            except Exception:  # noqa: BLE001 - any refusal is the expected outcome
                return
            raise AssertionError("tampered target was accepted")
        check(f"refuse tampered {path}", refuse)

    for path in args.denied:
        def denied(path=path):
            info = updater.get_targetinfo(path)
            if info is None:
                raise AssertionError("not found in signed targets")
            try:
                updater.download_target(info, os.path.join(args.target_dir, "denied_" + path.replace("/", "_")))
            except DownloadHTTPError as e:
                if e.status_code != 401:
                    raise AssertionError(f"expected HTTP 401, got {e.status_code}") from e
                return
            raise AssertionError("download without a token succeeded")
        check(f"denied without token {path}", denied)

    if server is not None:
        server.shutdown()
    return 0 if all(results) else 1


if __name__ == "__main__":
    sys.exit(main())
