#!/usr/bin/env bash
# Refresh the locks, check them on the box's platforms, and run the whole suite on them.
#
#   requirements/relock.sh            newest versions pyproject.toml allows (what a new install would get)
#   requirements/relock.sh --keep     keep today's pins where pyproject.toml still allows them (after
#                                     adding or changing a dependency)
#   requirements/relock.sh --no-test  the locks and the platform check only
#
# Writes requirements/box.txt (what a box runs) and requirements/test.txt (the same pins plus the test
# tools), both with every file's hash, for every platform (one universal resolution for Python 3.11, the
# Python of Debian 12 / Raspberry Pi OS). Then requirements/check_platforms.py downloads every pinned
# wheel for 64-bit x86, 64-bit ARM and 32-bit ARM, and `./run.sh test` rebuilds .venv from the new lock
# and runs the suite. Review `git diff requirements/` and commit the locks only when it is green: a
# dependency is code the box ships.
set -euo pipefail
cd "$(dirname "$0")/.."

upgrade=(--upgrade)
run_tests=1
for arg in "$@"; do
  case "$arg" in
    --keep) upgrade=() ;;
    --no-test) run_tests=0 ;;
    *) echo "usage: requirements/relock.sh [--keep] [--no-test]" >&2; exit 2 ;;
  esac
done

# uv resolves for every platform at once (pip-compile resolves for the machine it runs on only); it is a
# tool of this script, pinned with its hash like everything else, in a venv of its own.
tools=.venv-lock
if [ ! -x "$tools/bin/uv" ] || ! cmp -s requirements/tools.txt "$tools/.tools.txt"; then
  rm -rf "$tools"
  python3 -m venv "$tools"
  "$tools/bin/python" -m pip install -q --no-deps --require-hashes -r requirements/tools.txt
  cp requirements/tools.txt "$tools/.tools.txt"
fi

compile() {
  "$tools/bin/uv" pip compile --quiet --universal --python-version 3.11 --generate-hashes \
    --custom-compile-command "requirements/relock.sh" "${upgrade[@]}" "$@"
}
# The box's lock first; the test lock is held to the box's pins, so the suite tests what a box runs.
compile requirements/tools.in -o requirements/tools.txt
compile pyproject.toml -o requirements/box.txt
compile pyproject.toml --extra moviepy --extra test -c requirements/box.txt -o requirements/test.txt

git --no-pager diff --stat -- requirements/ || true
python3 requirements/check_platforms.py requirements/box.txt
if [ "$run_tests" = 1 ]; then
  ./run.sh test
fi
