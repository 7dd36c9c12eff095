#!/usr/bin/env bash
# Train one agent on one dataset for several seeds, one after another.
#   scripts/seed_sweep.sh DATASET AGENT "0 1 2 3" [more train.py flags...]
# Then: python -m scripts.tables --root <log_path>
set -euo pipefail
if [ $# -lt 3 ]; then
  echo "usage: $0 DATASET AGENT \"SEEDS\" [train.py flags...]" >&2
  exit 2
fi
dataset=$1 agent=$2 seeds=$3
shift 3
cd "$(dirname "$0")/.."
for seed in $seeds; do
  python train.py --env_name "$dataset" --agent "$agent" --seed "$seed" "$@"
done
