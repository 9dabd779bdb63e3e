#!/usr/bin/env bash
# One worker group started by the DeepSpeed launcher over the hosts of a DeepSpeed hostfile.
#
# Run this script on the hostfile's FIRST host: the moesearch process started here is the group's
# supervisor, and the launcher puts node 0, with global rank 0, on the first host; rank 0 talks to the
# supervisor over a local socket. The launcher reaches the other hosts itself (pdsh over ssh), so it
# needs passwordless ssh from the first host to every host, pdsh installed, moesearch's Python
# environment at the same path on every host, and this script started from a folder every host has
# (a shared filesystem: the launcher changes to it on each host). Of your environment, only variables
# named NCCL*, PYTHON*, UCX*, MV2* and MLFLOW* reach the other hosts (the DeepSpeed launcher's rule).
# Ranks map to GPUs by LOCAL_RANK.
#
# A hostfile: one line per host, "HOST slots=GPUS", nothing else on the line; lines starting with
# '#' are comments. With this one, run the script on gpu001:
#
#   # two hosts, eight GPUs each
#   gpu001 slots=8
#   gpu002 slots=8
#
#   HOSTFILE=$PWD/hostfile jobs/deepspeed-hostfile.sh                  # creates or resumes the study
#   MODE=worker HOSTFILE=$PWD/hostfile2 jobs/deepspeed-hostfile.sh     # one more group for it
#
# Variables (all optional; defaults set below):
#   MODE         search: create the study or resume it; worker: join an existing study      [search]
#   HOSTFILE     the DeepSpeed hostfile                                              [$PWD/hostfile]
#   SPACE        search space (MODE=search): a shipped name or a .toml path                [cluster]
#   STUDY        study name                                      [$SPACE, less any folder and .toml]
#   RESULTS      Parquet records and logs (shared filesystem)                         [$PWD/results]
#   STORAGE      sqlite:///FILE while this is the study's only group; journal:FILE on a shared
#                filesystem or postgresql://user:pass@host/db when other groups join
#                                                               [journal:$RESULTS/moesearch.journal]
#   NNODES       hosts in the group                                 [the hostfile's number of hosts]
#   NPROC        ranks per host, one per GPU                                [the first host's slots]
#   MASTER_ADDR  the first host's address as the other hosts reach it    [the hostfile's first host]
#   MASTER_PORT  rendezvous port on the first host, free there                               [29500]
#   SEED         training seed (MODE=search; worker groups use the study's)                     [0]
#   TRIALS       trained trials the study should have; empty: the space's search.trials
#                (MODE=search) or the study's current target (MODE=worker)                   [empty]
#   DATA         training text (MODE=search): a path every host reads; empty: the Python
#                standard library                                                            [empty]

set -euo pipefail

: "${MODE:=search}"
: "${HOSTFILE:=$PWD/hostfile}"
if [[ ! -r "$HOSTFILE" ]]; then
    echo "HOSTFILE: $HOSTFILE cannot be read; write one (see the top of $0) or set HOSTFILE" >&2
    exit 2
fi
: "${SPACE:=cluster}"
: "${STUDY:=$(basename "$SPACE" .toml)}"
: "${RESULTS:=$PWD/results}"
: "${STORAGE:=journal:$RESULTS/moesearch.journal}"
: "${NNODES:=$(awk '!/^[[:space:]]*(#|$)/ {n++} END {print n + 0}' "$HOSTFILE")}"
: "${NPROC:=$(awk '!/^[[:space:]]*(#|$)/ {for (i = 2; i <= NF; i++) if (sub(/^slots=/, "", $i)) print $i; exit}' "$HOSTFILE")}"
: "${MASTER_ADDR:=$(awk '!/^[[:space:]]*(#|$)/ {print $1; exit}' "$HOSTFILE")}"
: "${MASTER_PORT:=29500}"
: "${SEED:=0}"
: "${TRIALS:=}"
: "${DATA:=}"

mkdir -p "$RESULTS"
echo "moesearch: $MODE group of $NNODES hosts x $NPROC ranks from $HOSTFILE, rendezvous $MASTER_ADDR:$MASTER_PORT"
case "$MODE" in
    search)
        exec moesearch search "$SPACE" --storage "$STORAGE" --study "$STUDY" --results "$RESULTS" \
            --launcher deepspeed --hostfile "$HOSTFILE" --nnodes "$NNODES" --nproc "$NPROC" \
            --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
            --seed "$SEED" ${TRIALS:+--trials "$TRIALS"} ${DATA:+--data "$DATA"} --no-progress
        ;;
    worker)
        exec moesearch worker --storage "$STORAGE" --study "$STUDY" --results "$RESULTS" \
            --launcher deepspeed --hostfile "$HOSTFILE" --nnodes "$NNODES" --nproc "$NPROC" \
            --master-addr "$MASTER_ADDR" --master-port "$MASTER_PORT" \
            ${TRIALS:+--trials "$TRIALS"} --no-progress
        ;;
    *)
        echo "MODE: '$MODE' is neither search nor worker" >&2
        exit 2
        ;;
esac
