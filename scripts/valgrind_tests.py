#!/usr/bin/env python3
"""Runs every C test that ctest knows (autotest/c/) under valgrind memcheck
(docs/reliability.md): an invalid read or write, a use of uninitialised
memory or a definite leak fails the run.

The tests, their arguments, environment, working directory and skip code
come from ctest itself (`ctest --show-only=json-v1`), so a test added to
autotest/c/CMakeLists.txt is covered without touching this script.

TPS_TEST_QUICK=1 is set for every test: a test that builds big models
(test_local) then uses a smaller size, since valgrind runs ~50x slower than
native; plain ctest keeps the full size. A test that exits with its
SKIP_RETURN_CODE (77: no GPU) counts as skipped, never as passed.

Valgrind runs a program's threads one at a time, so each test uses one
core: -j N (default: the number of cores) runs N tests at once, longest
first (each test's CPU time in one native run at the quick sizes predicts
its time under valgrind), each reported as it ends.

Usage (from the repository root, after building):
    /usr/bin/python3 scripts/valgrind_tests.py [BUILD_DIR] [-R REGEX] [-j N]
"""
import argparse
import concurrent.futures
import json
import os
import re
import resource
import subprocess
import sys
import threading
import time

# No --track-origins: it doubles the time; add it by hand to the one failing
# test's command (build/valgrind-NAME.log has the report) to find where an
# uninitialised value comes from.
VALGRIND = ["valgrind", "--error-exitcode=99", "--leak-check=full",
            "--errors-for-leak-kinds=definite", "--show-leak-kinds=definite", "-q"]


def test_env(t):
    """The test's properties and the environment it runs in here."""
    props = {p["name"]: p["value"] for p in t.get("properties", [])}
    # One OpenBLAS thread: its idle threads spin, and valgrind runs one
    # thread at a time (a spinning one stalls the rest for its slice).
    env = dict(os.environ, TPS_TEST_QUICK="1", OPENBLAS_NUM_THREADS="1")
    env.update(kv.split("=", 1) for kv in props.get("ENVIRONMENT", []))
    return props, env


def native_cost(t, build):
    """CPU seconds of one native run of the test at the quick sizes: what it
    will cost under valgrind, up to a factor that is about the same for every
    test (valgrind's slowdown is per instruction)."""
    props, env = test_env(t)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(t["command"], cwd=props.get("WORKING_DIRECTORY", build), env=env,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def run_one(t, build):
    """(name, exit status, seconds, log path) of one test under valgrind."""
    name = t["name"]
    props, env = test_env(t)
    log = os.path.join(build, "valgrind-%s.log" % name)
    start = time.monotonic()
    with open(log, "w") as out:
        rc = subprocess.run(VALGRIND + t["command"], cwd=props.get("WORKING_DIRECTORY", build),
                            env=env, stdout=out, stderr=subprocess.STDOUT).returncode
    return name, rc, time.monotonic() - start, log, props.get("SKIP_RETURN_CODE")


def labels(t):
    return next((p["value"] for p in t.get("properties", []) if p["name"] == "LABELS"), [])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("build", nargs="?", default="build")
    ap.add_argument("-R", dest="regex", default="", help="only tests whose name matches")
    ap.add_argument("-j", dest="jobs", type=int, default=os.cpu_count() or 1,
                    help="tests at once (default: the number of cores)")
    args = ap.parse_args()
    build = os.path.abspath(args.build)
    listing = subprocess.run(["ctest", "--show-only=json-v1"], cwd=build, check=True,
                             capture_output=True, text=True).stdout
    # Checks of the build itself (label "static": check_layers.py) run no C code.
    tests = [t for t in json.loads(listing)["tests"] if re.search(args.regex, t["name"])
             and "static" not in labels(t)]
    failed, passed, skipped = [], 0, 0
    lock = threading.Lock()
    start = time.monotonic()
    # Longest first, so that the last long test does not run alone at the
    # end (the costs: one native run each at the quick sizes, seconds in all).
    if args.jobs > 1:
        cost = {t["name"]: native_cost(t, build) for t in tests}
        tests.sort(key=lambda t: -cost[t["name"]])
        print("valgrind: order by native CPU time at the quick sizes (%.1f s in all)"
              % sum(cost.values()), flush=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for done in concurrent.futures.as_completed([pool.submit(run_one, t, build)
                                                     for t in tests]):
            name, rc, secs, log, skip_code = done.result()
            with lock:
                if rc == 0:
                    print("valgrind %s: clean (%.1f s)" % (name, secs), flush=True)
                    passed += 1
                elif rc == skip_code:
                    print("valgrind %s: skipped (%.1f s)" % (name, secs), flush=True)
                    skipped += 1
                else:
                    what = "valgrind errors" if rc == 99 else "exit %d" % rc
                    print("valgrind %s: FAILED, %s (%.1f s); %s:" % (name, what, secs, log),
                          flush=True)
                    with open(log) as f:
                        sys.stdout.write(f.read())
                    failed.append(name)
    print("valgrind: %d clean, %d skipped, %d failed %s (%.0f s, %d at a time)"
          % (passed, skipped, len(failed), " ".join(failed), time.monotonic() - start,
             max(1, args.jobs)))
    return 1 if failed or passed == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
