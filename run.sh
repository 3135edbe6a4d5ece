#!/usr/bin/env bash
# One entry point for a fresh Debian 12 / Raspberry Pi OS machine:
#   ./run.sh demo    set up, then the whole pipeline on the synthetic camera with a private Redis
#   ./run.sh test    set up, then the test suite
#   ./run.sh setup   set up only (system packages if missing, .venv, the package)
# Set-up is idempotent and quick once done.
set -euo pipefail
cd "$(dirname "$0")"

want_test_tools=0
[ "${1:-}" = "test" ] && want_test_tools=1

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

system_packages() {
  local missing=()
  command -v ffmpeg >/dev/null || missing+=(ffmpeg)
  # The synthetic camera's clock and the demo read this font (they still run without it).
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
  command -v redis-server >/dev/null || missing+=(redis-server)
  command -v python3 >/dev/null || missing+=(python3)
  python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  if [ "$want_test_tools" = 1 ]; then
    # The RTSP test camera: GStreamer's RTSP server, driven by the system Python.
    /usr/bin/python3 -c "import gi; gi.require_version('GstRtspServer', '1.0')" 2>/dev/null ||
      missing+=(python3-gi gir1.2-gst-rtsp-server-1.0)
    command -v gst-inspect-1.0 >/dev/null || missing+=(gstreamer1.0-tools)
    local pair
    # The cameras venues buy: H.264 or H.265 (x265enc), AAC or G.711 A-law/µ-law audio.
    for pair in videotestsrc:base audiotestsrc:base audioconvert:base audioresample:base \
                rtph264pay:good rtph265pay:good rtpmp4apay:good rtppcmapay:good rtppcmupay:good \
                alawenc:good mulawenc:good x264enc:ugly x265enc:bad voaacenc:bad; do
      gst-inspect-1.0 "${pair%%:*}" >/dev/null 2>&1 || missing+=("gstreamer1.0-plugins-${pair##*:}")
    done
    # The fleet's tests: a real MQTT broker (its clients for bench/fleet.py's floor).
    command -v mosquitto >/dev/null || [ -x /usr/sbin/mosquitto ] || missing+=(mosquitto)
    command -v mosquitto_sub >/dev/null || missing+=(mosquitto-clients)
    # The web app's browser tests: Debian's chromium, driven by Playwright (no browser download).
    [ -x /usr/bin/chromium ] || missing+=(chromium)
    # deploy/install.sh is tested in a fresh Debian 12 root; releases are venvs of the system's Python.
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    /usr/bin/python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
  fi
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "installing system packages: ${missing[*]}" >&2
    mapfile -t missing < <(printf '%s\n' "${missing[@]}" | sort -u)
    as_root apt-get update -qq
    DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
}

python_env() {
  # One venv for both commands, exactly the test lock's pins (the box's pins plus the test tools):
  # rebuilt from scratch whenever the lock or pyproject.toml changes, so nothing else is left in it.
  local lock=requirements/test.txt
  local stamp=".venv/.installed-$(cat "$lock" pyproject.toml | sha256sum | cut -c1-16)"
  if [ ! -f "$stamp" ]; then
    rm -rf .venv
    python3 -m venv .venv
    # --no-deps: the lock is complete, so pip resolves nothing; --require-hashes: every file is the
    # one that was locked. The package itself goes in editable, built with the lock's setuptools.
    .venv/bin/python -m pip install -q --no-deps --require-hashes -r "$lock" >&2
    # An egg-info left in the checkout by an older build would shadow the package's metadata (its
    # subcommands) for every process started with the checkout on PYTHONPATH.
    rm -rf ./*.egg-info
    .venv/bin/python -m pip install -q --no-deps --no-build-isolation -e . >&2
    .venv/bin/python -m pip check >&2
    touch "$stamp"
    echo "installed from $lock: $(.venv/bin/python -m pip freeze --exclude-editable | tr '\n' ' ')" >&2
  fi
}

system_packages
python_env
case "${1:-}" in
  demo) shift; exec .venv/bin/gravanois demo "$@" ;;
  test)
    shift
    # Four tests at a time (an idle worker takes half of the busiest one's queue: --dist worksteal); the
    # minutes-long emulated Pi test starts first, beside the others.
    exec .venv/bin/python -m pytest -n 4 --dist worksteal "$@" ;;
  setup) ;;
  *) echo "usage: ./run.sh demo|test|setup [args]" >&2; exit 2 ;;
esac
