#!/usr/bin/env bash
# Issue 13's before/after table: every method the method-fidelity commits changed (SPOS, ENAS, ProxylessNAS,
# GreedyNAS, SMASH, GHN, DARTS), at budget=cpu, seeds 0 and 1, on nb201 and mbnet_chain, run once with the code
# before those commits (9b8dff7, checked out as a git worktree with its own pinned venv) and once with this checkout.
# Records go to results/measured/method_fidelity/{before,after}; finished runs are reused, so it resumes where it
# stopped. JOBS runs at once (default 2), each at one thread. DARTS (second order) is last: 17 to 25 min a run.
# FILTER (an extended regex over "<side> <space> <method> <seed>") keeps some of the runs, e.g. FILTER='darts'.
#   ONESHOT_CIFAR10_ROOT=../shared/data/cifar10-subset bash benchmarks/method_fidelity.sh
#   python -m reports.before_after --before results/measured/method_fidelity/before \
#       --after results/measured/method_fidelity/after
set -euo pipefail
cd "$(dirname "$0")/.."
BEFORE_COMMIT=9b8dff766f2f81d93d14cee44d6cc1a92536e438  # parent of 794f4c9, the first fidelity commit
WORKTREE=${WORKTREE:-../oneshot-bench-before-fidelity}
STORE=$PWD/results/measured/method_fidelity
JOBS=${JOBS:-2}
: "${ONESHOT_CIFAR10_ROOT:?set ONESHOT_CIFAR10_ROOT to the CIFAR-10 folder (e.g. ../shared/data/cifar10-subset)}"
AFTER_PY=${AFTER_PY:-$PWD/.venv/bin/python}
[ -x "$AFTER_PY" ] || { echo "error: no $AFTER_PY; install this checkout first (README: Quick start) or set AFTER_PY" >&2; exit 2; }
if [ ! -d "$WORKTREE" ]; then
  git worktree add --detach "$WORKTREE" "$BEFORE_COMMIT"
fi
if [ ! -x "$WORKTREE/.venv/bin/python" ]; then
  (cd "$WORKTREE" && python3 -m venv .venv && .venv/bin/python -m pip install -q -c constraints.txt -e ".[dev]")
fi
HYDRA_DIR=$PWD/outputs/method_fidelity  # Hydra's per-run logs, outside the committed store
export ONESHOT_CIFAR10_ROOT OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 STORE WORKTREE AFTER_PY HYDRA_DIR
export ONESHOT_CIFAR10_ROOT="$(cd "$ONESHOT_CIFAR10_ROOT" && pwd)"
{
  for space in nb201 mbnet_chain; do
    for method in spos enas proxylessnas greedynas smash ghn; do
      for seed in 0 1; do for side in before after; do echo "$side $space $method $seed"; done; done
    done
  done
  for space in nb201 mbnet_chain; do for seed in 0 1; do for side in after before; do
    echo "$side $space darts $seed"; done; done; done
} | grep -E -- "${FILTER:-.}" | xargs -P "$JOBS" -L 1 bash -c '
  side=$0 space=$1 method=$2 seed=$3
  if [ "$side" = before ]; then dir=$WORKTREE py=$WORKTREE/.venv/bin/python; else dir=$PWD py=$AFTER_PY; fi
  start=$(date +%s)
  (cd "$dir" && "$py" run.py method=$method space=$space data=cifar10 budget=cpu seed=$seed \
      execution.results_dir="$STORE/$side" execution.threads=1 hydra.run.dir="$HYDRA_DIR/$side/$space-$method-s$seed" \
      > /dev/null 2>&1) && rc=0 || rc=$?
  echo "$side $space $method seed=$seed: exit $rc, $(( $(date +%s) - start )) s"'
