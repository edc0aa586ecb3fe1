# Shared by the command-line test scripts (sourced): cli_setup takes the
# scripts' arguments, ok/bad record results in $fail, run captures a
# command's output and exit code, expect checks both.
cli_setup() {  # cli_setup RECUR [DATADIR] WORKDIR: a fresh WORKDIR, entered; fail=0
  RECUR=$1
  if [ $# -ge 3 ]; then DATA=$2; WORK=$3; else DATA=; WORK=$2; fi
  rm -rf "$WORK"
  mkdir -p "$WORK"
  cd "$WORK" || exit 1
  fail=0
}
ok() { echo "ok: $*"; }
bad() { echo "FAIL: $*"; fail=1; }
run() {  # run NAME ARGS...: output in NAME.log, exit code in $rc
  local name=$1
  shift
  "$RECUR" "$@" >"$name.log" 2>&1
  rc=$?
}
expect() {  # expect NAME RC TEXT: exit code RC (or "nonzero") and TEXT in the output
  local name=$1 want=$2 text=$3
  if { [ "$want" = nonzero ] && [ $rc -ne 0 ] || [ "$rc" = "$want" ]; } && grep -qF -- "$text" "$name.log"; then
    ok "$name"
  else
    bad "$name: rc $rc (want $want), looking for: $text"
    cat "$name.log"
  fi
}
no_source_paths() {  # the user's messages carry no file:line or statement of recur's sources
  if grep -qE '\.(cpp|h|cu):[0-9]+|`' "$1.log"; then bad "$1: a source path in the message"; cat "$1.log"; fi
}
