#!/usr/bin/env bash
# Install the box on a fresh Raspberry Pi OS Lite (Bookworm) or Debian 12, from this checkout:
#
#   sudo deploy/install.sh                  install (or bring an existing install up to this checkout)
#   sudo deploy/install.sh --uninstall      remove it; recorded highlights and settings are kept
#   sudo deploy/install.sh --uninstall --purge   remove those too (and the box's user)
#
# What it does, each step only when it is not done already (running it again changes nothing):
#   - system packages: ffmpeg, redis-server (Debian's own Redis service is disabled: the box runs its own),
#     python3-venv, fonts-dejavu-core;
#   - a system user and group `gravanois`, in the video, gpio and dialout groups;
#   - the release: a venv under /opt/gravanois/releases/<id> with exactly requirements/box.txt and this
#     checkout's wheel, checked, then the `current` link (deploy/release.py);
#   - the settings file /etc/gravanois/gravanois.env (from .env.example, never overwritten);
#   - the segment buffer: its own tmpfs at /var/lib/gravanois/buffer (in /etc/fstab, mounted now);
#   - /proc mounted with hidepid=2 (other users cannot see the box's processes), logind exempted;
#   - the udev rule for serial button boxes;
#   - /usr/local/bin/gravanois (runs the current release as the box's user, with the settings file);
#   - the systemd unit gravanois.service (supervisord at boot, KillMode=control-group), enabled and
#     started (where systemd runs; in a chroot it is enabled for the next boot).
#
# Options: --root DIR (/opt/gravanois), --user NAME (gravanois), --buffer-mb N (256), --no-apt (the
# packages are installed already), --source SRC (a wheel or a version instead of this checkout).
set -euo pipefail

root=/opt/gravanois
user=gravanois
buffer_mb=256
data=/var/lib/gravanois
etc=/etc/gravanois
source_arg=""
apt=1
uninstall=0
purge=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --user) user="$2"; shift 2 ;;
    --buffer-mb) buffer_mb="$2"; shift 2 ;;
    --source) source_arg="$2"; shift 2 ;;
    --no-apt) apt=0; shift ;;
    --uninstall) uninstall=1; shift ;;
    --purge) purge=1; shift ;;
    *) echo "usage: sudo deploy/install.sh [--root DIR] [--user NAME] [--buffer-mb N] [--no-apt] [--source SRC] | --uninstall [--purge]" >&2; exit 2 ;;
  esac
done

checkout="$(cd "$(dirname "$0")/.." && pwd)"
buffer="$data/buffer"
env_file="$etc/gravanois.env"
unit=/etc/systemd/system/gravanois.service
wrapper=/usr/local/bin/gravanois
udev_rule=/etc/udev/rules.d/70-gravanois-button.rules
logind_dropin=/etc/systemd/system/systemd-logind.service.d/gravanois-hidepid.conf
fstab_mark="# gravanois"
changed=0

say() { echo "install: $*" >&2; }
note_change() { changed=1; say "$*"; }
systemd_runs() { [ -d /run/systemd/system ]; }

if [ "$(id -u)" -ne 0 ]; then
  echo "error: run it as root: sudo deploy/install.sh" >&2
  exit 2
fi

# Copy a file into place only when its content differs (so a second run changes nothing).
put() {
  local src="$1" dest="$2" mode="$3"
  if ! cmp -s "$src" "$dest" 2>/dev/null; then
    mkdir -p "$(dirname "$dest")"
    install -m "$mode" "$src" "$dest"
    note_change "wrote $dest"
  fi
}

# A line in /etc/fstab for a mount point, replaced when it differs, marked as the box's.
fstab_line() {
  local mountpoint="$1" line="$2"
  if ! grep -qxF "$line $fstab_mark" /etc/fstab 2>/dev/null; then
    touch /etc/fstab
    grep -vE "^[^#[:space:]]+[[:space:]]+${mountpoint//\//\\/}[[:space:]]" /etc/fstab >/etc/fstab.gravanois-tmp || true
    echo "$line $fstab_mark" >>/etc/fstab.gravanois-tmp
    mv /etc/fstab.gravanois-tmp /etc/fstab
    note_change "/etc/fstab: $line"
  fi
}

is_mounted() { awk -v m="$1" '$2 == m {found=1} END {exit !found}' /proc/mounts 2>/dev/null; }

do_uninstall() {
  if systemd_runs; then
    systemctl disable --now gravanois.service 2>/dev/null || true
  elif [ -e /etc/systemd/system/multi-user.target.wants/gravanois.service ]; then
    systemctl disable gravanois.service 2>/dev/null || rm -f /etc/systemd/system/multi-user.target.wants/gravanois.service
  fi
  rm -f "$unit" "$wrapper" "$udev_rule" "$logind_dropin"
  rmdir "$(dirname "$logind_dropin")" 2>/dev/null || true
  if grep -q "$fstab_mark\$" /etc/fstab 2>/dev/null; then
    grep -v "$fstab_mark\$" /etc/fstab >/etc/fstab.gravanois-tmp || true
    mv /etc/fstab.gravanois-tmp /etc/fstab
  fi
  if is_mounted "$buffer"; then umount "$buffer" || umount -l "$buffer"; fi
  if is_mounted /proc; then mount -o remount,hidepid=0 /proc 2>/dev/null || true; fi
  rm -rf "$root"
  systemd_runs && systemctl daemon-reload || true
  if [ "$purge" = 1 ]; then
    rm -rf "$data" "$etc"
    if id "$user" >/dev/null 2>&1; then userdel "$user" 2>/dev/null || true; fi
    say "removed the box, its highlights ($data), settings ($etc) and user $user"
  else
    rmdir "$buffer" 2>/dev/null || true
    say "removed the box; kept the highlights and data in $data and the settings in $etc (--purge removes them)"
  fi
}

if [ "$uninstall" = 1 ]; then
  do_uninstall
  exit 0
fi

# ---- system packages
if [ "$apt" = 1 ]; then
  missing=()
  for pkg in ffmpeg redis-server python3 python3-venv fonts-dejavu-core util-linux procps; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    note_change "installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
  fi
fi
# Debian starts its own Redis on port 6379; the box runs its own under supervisord.
if [ -e /etc/systemd/system/multi-user.target.wants/redis-server.service ]; then
  if systemd_runs; then systemctl disable --now redis-server.service 2>/dev/null || true; fi
  systemctl disable redis-server.service 2>/dev/null || rm -f /etc/systemd/system/multi-user.target.wants/redis-server.service
  note_change "disabled Debian's redis-server service"
fi

# ---- the box's user and groups
for group in video gpio dialout proc; do
  getent group "$group" >/dev/null || { groupadd --system "$group"; note_change "created group $group"; }
done
if ! id "$user" >/dev/null 2>&1; then
  useradd --system --user-group --home-dir "$data" --no-create-home --shell /usr/sbin/nologin "$user"
  note_change "created user $user"
fi
for group in video gpio dialout; do
  id -nG "$user" | tr ' ' '\n' | grep -qx "$group" || { usermod -aG "$group" "$user"; note_change "$user joins $group"; }
done
uid=$(id -u "$user")
gid=$(id -g "$user")

# ---- folders
for dir in "$root" "$data" "$buffer"; do
  [ -d "$dir" ] || { mkdir -p "$dir"; note_change "created $dir"; }
done
chown "$user:$user" "$data"
chmod 0750 "$data"
[ -d "$etc" ] || { install -d -m 0750 -o root -g "$user" "$etc"; note_change "created $etc"; }

# ---- the settings file (the operator's: written once, never overwritten)
if [ ! -f "$env_file" ]; then
  tmp=$(mktemp)
  {
    echo "# Grava Nóis Capture on $(hostname): the box's settings (docs in .env.example; see docs/pi.md)."
    echo "# Change a line, then: sudo systemctl restart gravanois"
    echo "GN_DATA_DIR=$data"
    echo "GN_BUFFER_DIR=$buffer"
    echo "GN_DEVICE_ID=$(hostname)"
    echo
    grep -vE '^#?(GN_DATA_DIR|GN_BUFFER_DIR|GN_DEVICE_ID)=' "$checkout/.env.example" | sed '1,3d'
  } >"$tmp"
  install -m 0640 -o root -g "$user" "$tmp" "$env_file"
  rm -f "$tmp"
  note_change "wrote $env_file (edit it: cameras, device credentials)"
fi

# ---- mounts: the buffer on its own tmpfs, /proc with hidepid
fstab_line "$buffer" "tmpfs $buffer tmpfs rw,nosuid,nodev,noexec,size=${buffer_mb}M,mode=0750,uid=$uid,gid=$gid 0 0"
is_mounted "$buffer" || { mount "$buffer"; note_change "mounted the buffer tmpfs at $buffer"; }
proc_gid=$(getent group proc | cut -d: -f3)
fstab_line /proc "proc /proc proc defaults,hidepid=2,gid=$proc_gid 0 0"
if is_mounted /proc && ! grep -qE "^proc /proc proc .*hidepid=(2|invisible)" /proc/mounts; then
  mount -o remount,hidepid=2,gid="$proc_gid" /proc && note_change "remounted /proc with hidepid=2"
fi
# systemd-logind must still see every session's processes (Debian's advice for hidepid).
logind_conf=$(mktemp)
printf '[Service]\nSupplementaryGroups=proc\n' >"$logind_conf"
put "$logind_conf" "$logind_dropin" 0644
rm -f "$logind_conf"

# ---- udev: serial button boxes
put "$checkout/deploy/gravanois-button.rules" "$udev_rule" 0644
if [ "$changed" = 1 ] && command -v udevadm >/dev/null && [ -S /run/udev/control ]; then
  udevadm control --reload-rules || true
fi

# ---- the release (as root; then owned by the box's user, who runs updates)
before=$(readlink "$root/current" 2>/dev/null || true)
release=$(cd "$checkout" && python3 -m deploy.release install "${source_arg:-$checkout}" --root "$root" --env-file "$env_file")
[ "releases/$release" = "$before" ] || note_change "release $release is current"
put "$checkout/deploy/boot.sh" "$root/boot.sh" 0755
chown -R "$user:$user" "$root"
chown root:root "$root/boot.sh"

# ---- the command for operators: the current release, as the box's user, with the settings file
wrapper_tmp=$(mktemp)
cat >"$wrapper_tmp" <<EOF
#!/bin/sh
# gravanois: the current release of the box, as its user, with its settings file (deploy/install.sh).
run="$root/current/bin/gravanois --env-file $env_file"
if [ "\$(id -un)" = "$user" ]; then exec \$run "\$@"; fi
if [ "\$(id -u)" -eq 0 ]; then exec runuser -u $user -- \$run "\$@"; fi
echo "gravanois: run it as root (sudo gravanois …) or as $user" >&2
exit 2
EOF
put "$wrapper_tmp" "$wrapper" 0755
rm -f "$wrapper_tmp"

# ---- systemd
unit_tmp=$(mktemp)
sed -e "s#@ROOT@#$root#g" -e "s#@ENV@#$env_file#g" -e "s#@DATA@#$data#g" -e "s#@BUFFER@#$buffer#g" \
  -e "s#@USER@#$user#g" "$checkout/deploy/gravanois.service" >"$unit_tmp"
unit_changed=0
cmp -s "$unit_tmp" "$unit" 2>/dev/null || unit_changed=1
put "$unit_tmp" "$unit" 0644
rm -f "$unit_tmp"
if [ ! -e /etc/systemd/system/multi-user.target.wants/gravanois.service ]; then
  systemctl enable gravanois.service >/dev/null 2>&1 ||
    ln -sf "$unit" /etc/systemd/system/multi-user.target.wants/gravanois.service
  note_change "enabled gravanois.service"
fi
if systemd_runs; then
  systemctl daemon-reload
  if ! systemctl is-active -q gravanois.service; then
    systemctl start gravanois.service
    note_change "started gravanois.service"
  elif [ "$unit_changed" = 1 ] || [ "releases/$release" != "$before" ]; then
    systemctl restart gravanois.service
    note_change "restarted gravanois.service"
  fi
else
  say "systemd is not running here: the box starts at the next boot"
fi

if [ "$changed" = 0 ]; then
  say "nothing to change: release $release is installed and current"
else
  say "done: release $release; settings in $env_file; status: sudo gravanois status"
fi
