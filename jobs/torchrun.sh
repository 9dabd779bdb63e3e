#!/usr/bin/env bash
# One worker group over several machines without SLURM: start this script on every machine of the
# group, with the same NNODES, MASTER_ADDR, MASTER_PORT and NPROC and its own NODE_RANK.
#
# Node 0 (NODE_RANK=0) runs `moesearch worker` (or `search`, see MODE): the group's supervisor, node
# 0's ranks and global rank 0. Every other node runs `moesearch node --node-rank NODE_RANK`, which
# starts its ranks through torchrun's static rendezvous at MASTER_ADDR:MASTER_PORT, rejoins whenever
# the group is restarted after a failure, and exits when the group finishes. Start the nodes in any
# order; moesearch must be installed at the same path on every machine.
#
#   gpu001$ MODE=search NODE_RANK=0 NNODES=2 MASTER_ADDR=gpu001 jobs/torchrun.sh
#   gpu002$             NODE_RANK=1 NNODES=2 MASTER_ADDR=gpu001 jobs/torchrun.sh
#
# `worker` joins an existing study (made by `moesearch search`); MODE=search on node 0 creates it,
# or resumes it. With a study shared by several groups, use journal: or postgresql:// storage.
#
# Variables (defaults set below; MASTER_ADDR has none):
#   NODE_RANK    this machine's place in the group: 0 runs the supervisor                        [0]
#   NNODES       machines in the group                                                           [2]
#   MASTER_ADDR  node 0's address as every node reaches it (required)
#   MASTER_PORT  rendezvous port on node 0, free there                                       [29500]
#   NPROC        ranks per machine, one per GPU; the same on every machine                       [8]
#   MODE         node 0: worker joins an existing study; search creates it or resumes it    [worker]
#   SPACE        search space (MODE=search): a shipped name or a .toml path                [cluster]
#   STUDY        study name (node 0)                             [$SPACE, less any folder and .toml]
#   RESULTS      Parquet records and logs (node 0; shared when other groups join)     [$PWD/results]
#   STORAGE      Optuna storage URL (node 0): sqlite:///FILE while this is the study's only group,
#                journal:FILE on a shared filesystem or postgresql://user:pass@host/db when other
#                groups join                                    [journal:$RESULTS/moesearch.journal]
#   SEED         training seed (MODE=search; worker groups use the study's)                     [0]
#   TRIALS       trained trials the study should have; empty: the space's search.trials
#                (MODE=search) or the study's current target (MODE=worker)                   [empty]
#   TRIAL_TIMEOUT search.timeout_s of the study's space, for every node's ranks (they must agree);
#                (a worker joins a study of SPACE's by default)             [SPACE's]
#   DATA         training text (MODE=search): a path every machine reads; empty: the Python
#                standard library                                                            [empty]

set -euo pipefail

: "${NODE_RANK:=0}"
: "${NNODES:=2}"
: "${MASTER_ADDR:?set MASTER_ADDR to the address of node 0, reachable from every node}"
: "${MASTER_PORT:=29500}"
: "${NPROC:=8}"
: "${MODE:=worker}"
: "${SPACE:=cluster}"
: "${STUDY:=$(basename "$SPACE" .toml)}"
: "${RESULTS:=$PWD/results}"
: "${STORAGE:=journal:$RESULTS/moesearch.journal}"
: "${SEED:=0}"
: "${TRIALS:=}"
: "${TRIAL_TIMEOUT:=}"
if [[ -z "$TRIAL_TIMEOUT" ]]; then  # every node's ranks give up a collective alike
    TRIAL_TIMEOUT=$(python -c 'import sys; from moesearch.core import space; print(space.load(sys.argv[1]).search.timeout_s)' "$SPACE")
fi
: "${DATA:=}"

echo "moesearch: node $NODE_RANK of $NNODES ($NPROC ranks), rendezvous $MASTER_ADDR:$MASTER_PORT"
if [[ "$NODE_RANK" != 0 ]]; then
    exec moesearch node --nnodes "$NNODES" --node-rank "$NODE_RANK" \
        --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" --nproc "$NPROC" \
        ${TRIAL_TIMEOUT:+--trial-timeout "$TRIAL_TIMEOUT"}
fi
mkdir -p "$RESULTS"
case "$MODE" in
    search)
        exec moesearch search "$SPACE" --storage "$STORAGE" --study "$STUDY" --results "$RESULTS" \
            --nproc "$NPROC" --nnodes "$NNODES" --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
            --seed "$SEED" ${TRIALS:+--trials "$TRIALS"} ${DATA:+--data "$DATA"} --no-progress
        ;;
    worker)
        exec moesearch worker --storage "$STORAGE" --study "$STUDY" --results "$RESULTS" \
            --nproc "$NPROC" --nnodes "$NNODES" --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
            ${TRIALS:+--trials "$TRIALS"} --no-progress
        ;;
    *)
        echo "MODE: '$MODE' is neither search nor worker" >&2
        exit 2
        ;;
esac
