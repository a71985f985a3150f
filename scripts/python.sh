#!/usr/bin/env bash
# Print the command of a supported Python interpreter (3.11, 3.12 or 3.13), or explain why
# there is none and exit 1. Used by `make install` (and so `make up`, `make test`), by
# scripts/prereqs.sh, which checks that interpreter's venv module, and by scripts/docker.sh
# (the interpreters whose wheels the mirror holds).
#
#   scripts/python.sh               python3 if supported, else python3.13, python3.12, python3.11
#                                   on PATH, else the newest one installed by pyenv
#   scripts/python.sh 3.13          an interpreter of that version (PATH, then pyenv)
#   scripts/python.sh /usr/bin/python3.12   that interpreter, if supported
set -euo pipefail

SUPPORTED=(3.13 3.12 3.11)

# version_of CMD: "3.X" when CMD runs (pyenv shims of unselected versions do not).
version_of() {
  "$1" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null
}

# resolve CMD: the interpreter's own path (not a pyenv shim, which depends on the directory).
resolve() {
  "$1" -c 'import sys; print(sys.executable)'
}

supported() {
  local version
  version=$(version_of "$1") || return 1
  [[ " ${SUPPORTED[*]} " == *" $version "* ]] && { [[ -z ${2-} ]] || [[ $version == "$2" ]]; }
}

# pyenv_python VERSION: the newest pyenv-installed interpreter of that version (pyenv itself
# need not be on PATH: its usual root is looked at too).
pyenv_python() {
  local root candidate
  root=$(pyenv root 2>/dev/null) || root=${PYENV_ROOT:-$HOME/.pyenv}
  [[ -d $root/versions ]] || return 1
  candidate=$(compgen -G "$root/versions/$1.*/bin/python$1" | sort -V | tail -n 1) || return 1
  [[ -n $candidate ]] && supported "$candidate" "$1" && printf '%s\n' "$candidate"
}

fail() {
  echo "No supported Python found: $1" >&2
  echo "fluxo-dados runs on Python ${SUPPORTED[*]}. Install one (e.g. apt-get install python3," \
    "or pyenv install 3.13), or name one: make up PYTHON=/path/to/python3.13 (or PYTHON=3.13)." >&2
  exit 1
}

wanted=${1-}
if [[ $wanted =~ ^3\.[0-9]+$ ]]; then
  [[ " ${SUPPORTED[*]} " == *" $wanted "* ]] || fail "Python $wanted is not supported."
  for candidate in "python$wanted" python3; do
    if command -v "$candidate" >/dev/null 2>&1 && supported "$candidate" "$wanted"; then
      resolve "$candidate"; exit 0
    fi
  done
  pyenv_python "$wanted" || fail "no python$wanted on PATH or under pyenv."
elif [[ -n $wanted ]]; then
  command -v "$wanted" >/dev/null 2>&1 || fail "PYTHON=$wanted is not a command."
  supported "$wanted" || fail "PYTHON=$wanted is Python $(version_of "$wanted" || echo 'not runnable')."
  resolve "$wanted"
else
  for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null 2>&1 && supported "$candidate"; then
      resolve "$candidate"; exit 0
    fi
  done
  for version in "${SUPPORTED[@]}"; do
    pyenv_python "$version" && exit 0
  done
  fail "python3 is $(version_of python3 || echo 'missing'), and no python3.13, 3.12 or 3.11 runs."
fi
