#!/usr/bin/env python3
"""The shared remote cache (issue 13): a second runner's build with a warm remote cache against
a cold build, side by side in one run, on real servers on loopback.

For each back end (Redis, nginx WebDAV, s3rver; started by scripts/remote-servers.sh, installed
by scripts/setup-servers.sh) and each run, in fresh directories with empty local caches:

* ``cold``        -- the project built with no remote cache (the baseline);
* ``cold+upload`` -- the same build writing through to an empty area of the remote;
* ``second``      -- another checkout, empty local cache, the same remote area: every stage
                     should come from the remote; its ``out/`` must equal the first's.

Prints medians and the ratios ``second / cold`` and ``cold+upload / cold``, with the bytes the
second runner downloaded. Wall-clock figures are for reading, never asserted.

Usage:

    cargo build --release
    python3 benches/remote_cache.py target/release/qairt .                      # digits
    python3 benches/remote_cache.py target/release/qairt ~/.cache/qairt-scale/mobilenetv2_96 \\
        --runs 1 --backends redis,webdav,s3

``PROJECT`` is copied whole (without ``out/`` and ``cache/``) for every build.
"""

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def tree_digest(directory: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(directory)).encode())
        h.update(hashlib.sha256(path.read_bytes()).digest())
    return h.hexdigest()


def checkout(project: Path, dest: Path) -> Path:
    """A copy of what the project reads: the repository root's project is qairt.toml, rules/
    and examples/digits; another project is its whole directory but out/ and cache/."""
    if project == REPO:
        dest.mkdir(parents=True)
        shutil.copy(project / "qairt.toml", dest / "qairt.toml")
        shutil.copytree(project / "examples" / "digits", dest / "examples" / "digits")
        if (project / "rules").is_dir():
            shutil.copytree(project / "rules", dest / "rules")
    else:
        shutil.copytree(project, dest, ignore=shutil.ignore_patterns("out", "cache"))
    return dest


def build(qairt: str, directory: Path, env: dict) -> tuple[float, dict]:
    """Wall seconds of one `qairt build`, and its `finished` event."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("QAIRT_REMOTE_CACHE")}
    full_env.update(env)
    start = time.perf_counter()
    result = subprocess.run(
        [qairt, "build", str(directory), "--message-format", "json"],
        env=full_env,
        capture_output=True,
        text=True,
    )
    seconds = time.perf_counter() - start
    if result.returncode not in (0, 2):
        sys.exit(f"build failed in {directory}:\n{result.stderr[-3000:]}")
    events = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    finished = next(e for e in events if e.get("event") == "finished")
    stages = [e for e in events if e.get("event") == "stage"]
    finished["stages_from_remote"] = sum(1 for e in stages if e.get("from") == "remote")
    finished["stages"] = len(stages)
    return seconds, finished


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("qairt")
    parser.add_argument("project", type=Path)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--backends", default="redis,webdav,s3")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    qairt = str(Path(args.qairt).resolve())
    project = args.project.resolve()

    work = Path(tempfile.mkdtemp(prefix="qairt-remote-bench-"))
    servers = work / "servers"
    script = REPO / "scripts" / "remote-servers.sh"
    subprocess.run(["bash", str(script), "start", str(servers)], check=True)
    try:
        env_file = dict(
            line.split("=", 1) for line in (servers / "env").read_text().splitlines() if "=" in line
        )
        credentials = {k: env_file[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION")}

        def url(backend: str, area: str) -> str:
            if backend == "redis":
                # One Redis database per run (0..15), emptied first: a fresh area.
                db = int(area.rsplit("-", 1)[1]) % 16
                port = env_file["REDIS_URL"].rsplit(":", 1)[1]
                subprocess.run(["redis-cli", "-p", port, "-n", str(db), "flushdb"], check=True, capture_output=True)
                return f"{env_file['REDIS_URL']}/{db}"
            if backend == "webdav":
                return f"webdav+{env_file['WEBDAV_ENDPOINT']}/cache/{area}"
            if backend == "s3":
                return f"s3://{env_file['S3_BUCKET']}/{area}?endpoint={env_file['S3_ENDPOINT']}"
            sys.exit(f"unknown back end {backend}")

        # Nothing is deleted until the end: on ext4, creating files soon after deleting many
        # costs far more (the inode allocator skips recently deleted inodes), which would bias
        # whichever build came after a deletion. Cold builds are interleaved with the others.
        figures = {"project": str(project), "runs": args.runs, "cold_s": [], "backends": {}}
        backends = args.backends.split(",")
        for backend in backends:
            figures["backends"][backend] = {
                "cold_upload_s": [], "second_s": [], "bytes_down": [], "bytes_up": [], "from_remote": []
            }
        n = 0
        for run in range(args.runs):
            seconds, _ = build(qairt, checkout(project, work / f"cold-{run}"), {"QAIRT_REMOTE_CACHE": "off"})
            figures["cold_s"].append(seconds)
            for backend in backends:
                rows = figures["backends"][backend]
                n += 1
                area = f"bench-{backend}-{n}"
                env = dict(credentials, QAIRT_REMOTE_CACHE=url(backend, area))
                first = checkout(project, work / f"{area}-first")
                seconds, finished = build(qairt, first, env)
                rows["cold_upload_s"].append(seconds)
                rows["bytes_up"].append(finished["remote"]["bytes_up"])
                second = checkout(project, work / f"{area}-second")
                seconds, finished = build(qairt, second, env)
                rows["second_s"].append(seconds)
                rows["bytes_down"].append(finished["remote"]["bytes_down"])
                rows["from_remote"].append(f"{finished['stages_from_remote']}/{finished['stages']}")
                if tree_digest(first / "out") != tree_digest(second / "out"):
                    sys.exit(f"{backend}: the second runner's out/ differs from the first's")
    finally:
        subprocess.run(["bash", str(script), "stop", str(servers)], check=False)

    cold = statistics.median(figures["cold_s"])
    print(f"project {project}: cold build (no remote) {cold:.2f} s, median of {args.runs}")
    print(f"{'back end':<8} {'cold+upload':>12} {'ratio':>6} {'second runner':>14} {'ratio':>6} {'down':>10} {'up':>10} from remote")
    for backend, rows in figures["backends"].items():
        upload = statistics.median(rows["cold_upload_s"])
        second = statistics.median(rows["second_s"])
        down = statistics.median(rows["bytes_down"]) / 1e6
        up = statistics.median(rows["bytes_up"]) / 1e6
        print(
            f"{backend:<8} {upload:>10.2f} s {upload / cold:>6.2f} {second:>12.2f} s {second / cold:>6.3f} "
            f"{down:>7.1f} MB {up:>7.1f} MB {rows['from_remote'][0]}"
        )
        rows["ratio_second_to_cold"] = second / cold
        rows["ratio_upload_to_cold"] = upload / cold
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
