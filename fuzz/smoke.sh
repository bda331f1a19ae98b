#!/usr/bin/env bash
# Fuzz smoke test, what CI runs: installs cargo-afl (and AFL++) if missing,
# runs the fuzz crate's plain tests, builds the targets with AFL
# instrumentation, fuzzes each one for a bounded time from the committed
# corpus, and fails if any crash was found (printed as hex, with the command
# that replays it without AFL).
#
# SMOKE_SECONDS (default 60) is the fuzzing time per target. Outputs go to
# $CARGO_TARGET_DIR/afl (default target/afl); nothing is left running.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

# The afl crate in fuzz/Cargo.lock and cargo-afl must agree.
AFL_VERSION=0.18.2
seconds=${SMOKE_SECONDS:-60}
# Plain builds share the workspace's target directory (and its compiled
# dataplane); instrumented ones get their own below it.
plain_dir=${CARGO_TARGET_DIR:-$root/target}
target_dir=$plain_dir/afl
targets=(pipeline conntrack)
start=$SECONDS

# AFL++ is built from source by `cargo install cargo-afl`: it needs make and
# a C compiler (no LLVM or clang: rustc does the instrumentation).
if ! command -v make >/dev/null || ! command -v cc >/dev/null; then
    echo "fuzz: installing make, gcc"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends make gcc libc6-dev >/dev/null
fi
if ! cargo afl --version 2>/dev/null | grep -q "^cargo-afl $AFL_VERSION "; then
    echo "fuzz: installing cargo-afl $AFL_VERSION (builds AFL++)"
    cargo install --locked --force cargo-afl --version "$AFL_VERSION"
fi
# AFL++ is built per rustc version: after a toolchain update it is missing.
rustc_dir=$(rustc -vV | awk '/^release:/ {r=$2} /^commit-hash:/ {h=substr($2, 1, 7)} END {print "rustc-" r "-" h}')
afl_data=${XDG_DATA_HOME:-$HOME/.local/share}/afl.rs/$rustc_dir/afl.rs-$AFL_VERSION
if [[ ! -x $afl_data/afl/bin/afl-fuzz || ! -f $afl_data/afl-llvm/afl-compiler-rt.o ]]; then
    echo "fuzz: building AFL++ for $rustc_dir"
    cargo afl config --build --force
fi
echo "fuzz: cargo test (plain build: seeds = corpus, corpus and noise pass)"
CARGO_TARGET_DIR=$plain_dir cargo test --manifest-path fuzz/Cargo.toml --locked
echo "fuzz: cargo afl build --release ($(( SECONDS - start )) s so far)"
(cd fuzz && CARGO_TARGET_DIR=$target_dir cargo afl build --release --locked --bins)

pids=()
cleanup() {
    for p in "${pids[@]}"; do
        kill -- "-$p" 2>/dev/null || kill "$p" 2>/dev/null || true
    done
}
trap cleanup EXIT

failed=0
for t in "${targets[@]}"; do
    out=$target_dir/smoke-out/$t
    rm -rf "$out"
    mkdir -p "$out"
    echo "fuzz: $t for ${seconds} s"
    # No UI, no CPU-governor or core-dump-pattern checks (CI machines
    # cannot change them), no core pinning (shared machine); stop at the
    # first crash. `timeout` is the backstop if AFL itself hangs.
    set +e
    AFL_NO_UI=1 AFL_SKIP_CPUFREQ=1 AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 \
        AFL_NO_AFFINITY=1 AFL_BENCH_UNTIL_CRASH=1 AFL_FAST_CAL=1 \
        setsid timeout -k 10 $(( seconds + 60 )) \
        cargo afl fuzz -i "fuzz/corpus/$t" -o "$out" -V "$seconds" \
        "$target_dir/release/$t" >"$out.log" 2>&1 &
    pids=($!)
    wait "${pids[0]}"
    rc=$?
    pids=()
    set -e
    stats=$out/default/fuzzer_stats
    if [[ ! -f $stats ]]; then
        echo "fuzz: $t: AFL did not start (exit $rc); last lines of $out.log:"
        tail -n 20 "$out.log"
        failed=1
        continue
    fi
    awk -v t="$t" -F' *: *' '
        $1 ~ /^(execs_done|execs_per_sec|edges_found|total_edges|bitmap_cvg|stability|saved_crashes|saved_hangs)$/ {
            printf "fuzz: %s %s = %s\n", t, $1, $2
        }' "$stats"
    if [[ $(awk -F' *: *' '$1 == "execs_done" {print $2}' "$stats") -eq 0 ]]; then
        echo "fuzz: $t: no input was executed (exit $rc)"
        failed=1
    fi
    shopt -s nullglob
    crashes=("$out"/default/crashes/id:*)
    shopt -u nullglob
    for c in "${crashes[@]}"; do
        echo "fuzz: $t CRASH $c"
        od -An -tx1 -v "$c"
        echo "fuzz: replay without AFL:"
        echo "  cargo run --release --manifest-path fuzz/Cargo.toml --bin $t -- '$c'"
        failed=1
    done
done

echo "fuzz: done in $(( SECONDS - start )) s"
if ((failed)); then
    echo "fuzz: FAILED"
    exit 1
fi
