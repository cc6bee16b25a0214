#!/usr/bin/env bash
# Issue 28's scoring-BN-mode table on mbnet_chain (NAS-Bench-Macro truth): SPOS, One-Shot, GreedyNAS and
# ProxylessNAS at budget=compare, seeds 0-2, each run scoring the shared sample under batch_stats_choice and, from the
# same trained weights, under the three others (scoring.also_bn_modes). The nb201 half is the NB201 reproduction itself
# (`tox -e reproduce-nb201`, whose table scores every mode). Records go to results/measured/mbnet_chain_bn_modes;
# finished runs are reused, so it resumes where it stopped. JOBS runs at once (default 1), each at one thread;
# about 3 to 4 minutes a run on one core.
#   ONESHOT_CIFAR10_ROOT=../shared/data/cifar10-subset bash benchmarks/bn_modes.sh
#   python -m reports.bn_modes --results results/measured/mbnet_chain_bn_modes \
#       --results results/measured/nb201_weight_sharing_bn_modes
set -euo pipefail
cd "$(dirname "$0")/.."
STORE=${STORE:-$PWD/results/measured/mbnet_chain_bn_modes}
JOBS=${JOBS:-1}
PY=${PY:-$PWD/.venv/bin/python}
: "${ONESHOT_CIFAR10_ROOT:?set ONESHOT_CIFAR10_ROOT to the CIFAR-10 folder (e.g. ../shared/data/cifar10-subset)}"
[ -x "$PY" ] || { echo "error: no $PY; install this checkout first (README: Quick start) or set PY" >&2; exit 2; }
export ONESHOT_CIFAR10_ROOT="$(cd "$ONESHOT_CIFAR10_ROOT" && pwd)" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 STORE PY
for seed in 0 1 2; do for method in spos oneshot greedynas proxylessnas; do echo "$method $seed"; done; done \
  | xargs -P "$JOBS" -L 1 bash -c '
  method=$0 seed=$1
  start=$(date +%s)
  "$PY" run.py method=$method space=mbnet_chain data=cifar10 budget=compare seed=$seed scoring.bn_mode=batch_stats_choice \
    "scoring.also_bn_modes=[recalibrate_all,recalibrate_choice,running]" execution.threads=1 \
    execution.results_dir=$STORE hydra.run.dir=$STORE/hydra/$method-s$seed > /dev/null
  echo "$method seed $seed: $(( $(date +%s) - start )) s"'
