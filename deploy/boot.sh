#!/bin/sh
# Run by systemd before every start of the box (ExecStartPre=ROOT/boot.sh ROOT), like a bootloader's
# fallback: an update that did not finish its health watch (its updater killed, a power cut) is undone,
# so the box starts the release it ran before the update, never one that was not proven healthy.
# The updater may ask for one start of the release on trial (when it needs a fresh supervisord): it writes
# restart=requested, this start consumes it, and any further start before the commit falls back, as a
# bootloader's boot counter does. It lives outside the releases (deploy/install.sh copies it), so no
# release can break it. Plain sh.
set -eu
root="${1:-/opt/gravanois}"
state="$root/update.state"

field() { sed -n "s/^$1=//p" "$state" | tail -n 1; }

point_current() {
  ln -sfn "releases/$1" "$root/.current.tmp-boot"
  mv -T "$root/.current.tmp-boot" "$root/current"
  sync
}

if [ -f "$state" ]; then
  phase=$(field phase)
  from=$(field from)
  to=$(field to)
  case "$phase" in
    trial | rolling_back)
      if [ "$phase" = trial ] && [ "$(field restart)" = requested ]; then
        sed 's/^restart=requested$/restart=started/' "$state" >"$state.tmp-boot"
        sync
        mv "$state.tmp-boot" "$state"
        sync
      elif [ -n "$from" ] && [ -f "$root/releases/$from/RELEASE" ]; then
        point_current "$from"
        reason="the box started again before the update to $to had proven itself"
        printf 'phase=rolled_back\nfrom=%s\nto=%s\nreason=%s\nat=%s\n' \
          "$from" "$to" "$reason" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >"$state.tmp-boot"
        sync
        mv "$state.tmp-boot" "$state"
        sync
        echo "gravanois: $reason; starting $from" >&2
      fi
      ;;
  esac
fi

# The link must name a complete release; else the previous one (never a half-installed folder).
current=$(readlink "$root/current" 2>/dev/null || true)
if [ ! -f "$root/${current:-none}/RELEASE" ]; then
  previous=$(readlink "$root/previous" 2>/dev/null || true)
  if [ -n "$previous" ] && [ -f "$root/$previous/RELEASE" ]; then
    point_current "$(basename "$previous")"
    echo "gravanois: current release ${current:-(none)} is incomplete; starting $(basename "$previous")" >&2
  else
    echo "gravanois: no complete release under $root: run deploy/install.sh again" >&2
    exit 1
  fi
fi
