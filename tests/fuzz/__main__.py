"""The long fuzz run: mutates the committed corpus for a while and saves every input that
breaks an invariant as corpus/<target>/crash-<sha1>, which the test suite then replays.

    python -m tests.fuzz [--target images|refs|envelopes|all] [--minutes 30] [--seed N]
"""

from __future__ import annotations

import argparse
import hashlib
import random
import time
import traceback

from .targets import CORPUS, RUN, TARGETS, Context, mutate, seeds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", choices=[*TARGETS, "all"], default="all")
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--seed", type=int, default=None)
    args = ap.parse_args()
    targets = TARGETS if args.target == "all" else (args.target,)
    rng = random.Random(args.seed)
    ctx = Context.create()
    end = time.monotonic() + 60 * args.minutes
    runs = dict.fromkeys(targets, 0)
    crashes = dict.fromkeys(targets, 0)
    pools = {t: seeds(t) for t in targets}
    while time.monotonic() < end:
        target = rng.choice(targets)
        pool = pools[target]
        data = mutate(rng, rng.choice(pool), pool)
        runs[target] += 1
        try:
            RUN[target](data, ctx)
        except Exception:
            crashes[target] += 1
            name = f"crash-{hashlib.sha1(data).hexdigest()}"
            (CORPUS / target / name).write_bytes(data)
            print(f"{target}: {name}\n{traceback.format_exc(limit=3)}")
    for t in targets:
        print(f"{t}: {runs[t]} inputs, {crashes[t]} invariant violations")
    raise SystemExit(1 if any(crashes.values()) else 0)


if __name__ == "__main__":
    main()
