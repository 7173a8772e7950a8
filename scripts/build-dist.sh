#!/usr/bin/env bash
# The `dist` build (the image's and the benchmark's), profile-guided: build with
# `-Cprofile-generate`, run scripts/pgo-train.sh on it, merge the profile, build again with
# `-Cprofile-use`. The result is $CARGO_TARGET_DIR/dist/ai-gateway (default target/).
#   scripts/build-dist.sh            # profile-guided (needs llvm-profdata, wrk and curl)
#   PGO=0 scripts/build-dist.sh      # plain: cargo build --profile dist
# llvm-profdata comes from rustup's llvm-tools component (installed here when missing), or set
# LLVM_PROFDATA to one of the same LLVM major version as rustc's. Extra cargo arguments (e.g.
# --locked) are passed on. Two builds of the whole tree: two to three times a plain build's time
# (docs/benchmarks.md, "Profile-guided build").
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
target="${CARGO_TARGET_DIR:-$root/target}"
cd "$root"
if [[ "${PGO:-1}" == 0 ]]; then
  exec cargo build --profile dist --bin ai-gateway "$@"
fi
profdata="${LLVM_PROFDATA:-}"
if [[ -z "$profdata" ]]; then
  sysroot="$(rustc --print sysroot)"
  host="$(rustc -vV | sed -n 's/^host: //p')"
  profdata="$sysroot/lib/rustlib/$host/bin/llvm-profdata"
  # Without rustup the check below says where it looked.
  [[ -x "$profdata" ]] || rustup component add llvm-tools >&2 || true
fi
[[ -x "$profdata" ]] || { echo "build-dist: no llvm-profdata at $profdata" >&2; exit 1; }
raw="$target/pgo/raw"
rm -rf "$raw"
mkdir -p "$raw"
# The instrumented build has its own target directory: its flags differ for every crate.
CARGO_TARGET_DIR="$target/pgo/gen" RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-generate=$raw" \
  cargo build --profile dist --bin ai-gateway "$@"
"$root/scripts/pgo-train.sh" "$target/pgo/gen/dist/ai-gateway"
"$profdata" merge -o "$target/pgo/merged.profdata" "$raw"
RUSTFLAGS="${RUSTFLAGS:-} -Cprofile-use=$target/pgo/merged.profdata" \
  cargo build --profile dist --bin ai-gateway "$@"
echo "build-dist: $target/dist/ai-gateway (profile-guided)"
