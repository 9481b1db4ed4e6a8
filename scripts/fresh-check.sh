#!/usr/bin/env bash
# Usage: scripts/fresh-check.sh [bookworm|trixie] [BRANCH]
# Proves the README's two commands on a fresh Debian: debootstraps a minimal system (minbase plus
# build-essential, git, curl, ca-certificates, as a new user has) into a temporary directory,
# binds this machine's Rust toolchain in where rustup puts it (read-only), copies the CA
# certificates and pip/cargo/apt network settings, clones BRANCH's committed HEAD (default: the
# current branch), starts a user's own unbound (127.0.0.1, its own config), then runs
# scripts/demo.sh and CI=true scripts/test.sh inside and checks that unbound is still running.
# Everything else must come from scripts/setup.sh. Cleans up even on failure: stops what it
# started in the chroot, unmounts in reverse order, checks /proc/mounts, then removes the tree.
# Beds inside and outside the chroot share /tmp/headroom-testbed.lock, so they never run at once.
# Needs root; takes 25-40 minutes on a 2-core machine. Logs: $FRESH_CHECK_LOGS (default /var/tmp).
# FRESH_CHECK_DRY=1: the fresh system, unbound and scripts/setup.sh test only (no build, demo, tests).
set -euo pipefail
# cleanup and its helpers run from a trap, which shellcheck 0.9 reads as unreachable:
# shellcheck disable=SC2317
# All in main(): bash reads a function whole before running it, so editing this file while a
# check runs (it takes half an hour) cannot change the running check.
main() {
suite=${1:-bookworm}
case "$suite" in
  bookworm | trixie) ;;
  *)
    echo "usage: scripts/fresh-check.sh [bookworm|trixie] [BRANCH]" >&2
    exit 64
    ;;
esac
repo=$(cd "$(dirname "$0")/.." && pwd)
branch=${2:-$(git -C "$repo" rev-parse --abbrev-ref HEAD)}
commit=$(git -C "$repo" rev-parse --verify "$branch^{commit}")
mirror=${FRESH_CHECK_MIRROR:-http://deb.debian.org/debian}
[ "$(id -u)" -eq 0 ] || {
  echo "fresh-check: needs root (debootstrap, mounts, chroot)" >&2
  exit 77
}
if ! command -v debootstrap >/dev/null; then
  echo "fresh-check: installing debootstrap on this machine (builds the fresh system)" >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null
fi

logs="${FRESH_CHECK_LOGS:-/var/tmp}/headroom-fresh-$suite-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$logs"
dir=$(mktemp -d "/var/tmp/headroom-fresh-$suite.XXXXXX")
chmod 755 "$dir" # a root directory as on any machine (mktemp makes it 0700)
mounts=()      # mount points, in the order mounted
unbound_pid="" # the user's unbound started in the chroot

log() { echo "fresh-check: $*" >&2; }

# Processes whose root directory is the chroot: all of them were started by this script.
chroot_pids() {
  local p
  for p in /proc/[0-9]*; do
    [ "$(readlink "$p/root" 2>/dev/null)" = "$dir" ] && echo "${p#/proc/}"
  done
  return 0
}

under_dir() { awk -v d="$dir" '$2 == d || index($2, d "/") == 1 { print $2 }' /proc/mounts; }

cleanup() {
  local rc=$? i pids
  set +e
  trap - EXIT INT TERM
  [ -n "$unbound_pid" ] && kill "$unbound_pid" 2>/dev/null
  pids=$(chroot_pids)
  if [ -n "$pids" ]; then
    # shellcheck disable=SC2086
    kill $pids 2>/dev/null
    sleep 2
    pids=$(chroot_pids)
    # shellcheck disable=SC2086
    [ -n "$pids" ] && kill -9 $pids 2>/dev/null && sleep 1
  fi
  for ((i = ${#mounts[@]} - 1; i >= 0; i--)); do
    umount -R "${mounts[i]}" 2>/dev/null || umount -R -l "${mounts[i]}"
  done
  # Whatever is left (debootstrap's own mounts after a failure, netns files): deepest first.
  under_dir | sort -r | while read -r m; do umount -R "$m" 2>/dev/null || umount -R -l "$m"; done
  if [ -n "$(under_dir)" ]; then
    log "still mounted under $dir, NOT removing it:"
    under_dir >&2
    exit 1
  fi
  rm -rf --one-file-system "$dir"
  log "cleaned up $dir; logs in $logs"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bind() { # bind SRC DST [ro]
  if [ -d "$1" ]; then mkdir -p "$2"; else : >>"$2"; fi
  mount --bind "$1" "$2"
  mounts+=("$2")
  if [ "${3:-}" = ro ]; then mount -o remount,bind,ro "$2"; fi
}

# The chroot directory bound onto itself, so `/` is a mount point inside (`ip netns exec` makes
# `/` a slave mount and fails otherwise); private, so nothing below propagates to the host.
mount --bind "$dir" "$dir"
mounts+=("$dir")
mount --make-private "$dir"

t0=$(date +%s)
log "debootstrap $suite (minbase + build-essential git curl ca-certificates) into $dir …"
debootstrap --variant=minbase --include=build-essential,git,curl,ca-certificates \
  "$suite" "$dir" "$mirror" >"$logs/debootstrap.log" 2>&1 || {
  tail -20 "$logs/debootstrap.log" >&2
  exit 1
}
t_boot=$(($(date +%s) - t0))
# The fresh system runs inside this machine's container, so it carries the container's marker
# as any system installed in it would: without /.dockerenv, Passenger probes /proc/1/environ to
# tell whether it is in a container, and this sandbox denies even root that file (PID 1 is
# outside our reach), so `passenger start` aborted (seen twice, 2026-12-06).
if [ -e /.dockerenv ]; then : >"$dir/.dockerenv"; fi
cat >"$dir/etc/apt/sources.list" <<EOF
deb $mirror $suite main
deb $mirror $suite-updates main
deb ${mirror%/debian}/debian-security $suite-security main
EOF

mount -t proc proc "$dir/proc"
mounts+=("$dir/proc")
mount --rbind /sys "$dir/sys"
mount --make-rslave "$dir/sys"
mounts+=("$dir/sys")
mount --rbind /dev "$dir/dev"
mount --make-rslave "$dir/dev"
mounts+=("$dir/dev")
mount -t tmpfs -o mode=755 tmpfs "$dir/run"
mounts+=("$dir/run")
mkdir -p "$dir/run/lock"

# Rust as rustup installs it for root: ~/.rustup and ~/.cargo/bin (read-only); the chroot's own
# cargo registry cache, so it never writes into this machine's.
bind "${RUSTUP_HOME:-$HOME/.rustup}" "$dir/root/.rustup" ro
bind "${CARGO_HOME:-$HOME/.cargo}/bin" "$dir/root/.cargo/bin" ro
for f in config config.toml; do
  [ -f "${CARGO_HOME:-$HOME/.cargo}/$f" ] && cp "${CARGO_HOME:-$HOME/.cargo}/$f" "$dir/root/.cargo/"
done

# One bed at a time across this machine and the chroot (the tests flock this file).
[ -e /tmp/headroom-testbed.lock ] || : >/tmp/headroom-testbed.lock
bind /tmp/headroom-testbed.lock "$dir/tmp/headroom-testbed.lock"

# The network settings a fresh machine in this network has: CA certificates, pip, apt.
if compgen -G "/usr/local/share/ca-certificates/*" >/dev/null; then
  cp -r /usr/local/share/ca-certificates/. "$dir/usr/local/share/ca-certificates/"
fi
chroot "$dir" update-ca-certificates >/dev/null 2>&1
[ -f /etc/pip.conf ] && cp /etc/pip.conf "$dir/etc/pip.conf"
for f in /etc/apt/apt.conf.d/*; do
  grep -q '^Acquire::' "$f" 2>/dev/null && cp "$f" "$dir/etc/apt/apt.conf.d/"
done
cp -L --remove-destination /etc/resolv.conf "$dir/etc/resolv.conf"

git clone -q --no-hardlinks "$(git -C "$repo" rev-parse --path-format=absolute --git-common-dir)" "$dir/root/headroom"
git -C "$dir/root/headroom" checkout -q --detach "$commit"

# The chroot's environment: what a root login with rustup's env has, plus this machine's PIP_*.
envs=(HOME=/root LANG=C.UTF-8 TERM=dumb USER=root LOGNAME=root
  PATH=/root/.cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin)
# (A PIP_* naming a local path the fresh system lacks, e.g. a wheel directory, is left out.)
while IFS='=' read -r k v; do
  case "$v" in /*) [ -e "$dir$v" ] || continue ;; esac
  envs+=("$k=$v")
done < <(env | grep '^PIP_' || true)
# In the background and waited for: bash runs a trap only after a foreground child ends, so a
# SIGTERM to this script would otherwise wait out a half-hour test run before cleaning up.
in_chroot() {
  chroot "$dir" /usr/bin/env -i "${envs[@]}" bash -c "$1" </dev/null &
  wait $!
}

# A user's own resolver: unbound from Debian (installed with no service start, as a user who had
# it would), on 127.0.0.1 at a free port with its own config, daemonized.
log "installing and starting a user's own unbound in the chroot …"
printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
chmod 755 "$dir/usr/sbin/policy-rc.d"
in_chroot 'apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends unbound >/dev/null' \
  >"$logs/user-unbound.log" 2>&1
rm -f "$dir/usr/sbin/policy-rc.d"
port=25353
while ss -Hlnu "sport = :$port" | grep -q . || ss -Hlnt "sport = :$port" | grep -q .; do port=$((port + 1)); done
cat >"$dir/etc/unbound/user-resolver.conf" <<EOF
server:
  interface: 127.0.0.1
  port: $port
  do-daemonize: yes
  pidfile: "/run/user-unbound.pid"
  username: ""
  chroot: ""
  directory: "/etc/unbound"
  use-syslog: no
  logfile: ""
  module-config: "iterator"
  access-control: 127.0.0.0/8 allow
  local-zone: "user.test." static
  local-data: "resolver.user.test. A 127.0.0.42"
EOF
in_chroot 'unbound -c /etc/unbound/user-resolver.conf' >>"$logs/user-unbound.log" 2>&1
sleep 1
unbound_pid=$(cat "$dir/run/user-unbound.pid")
unbound_start=$(awk '{ print $22 }' "/proc/$unbound_pid/stat")
log "user's unbound: pid $unbound_pid on 127.0.0.1:$port"
unbound_same() { [ -e "/proc/$unbound_pid/stat" ] && [ "$(awk '{ print $22 }' "/proc/$unbound_pid/stat")" = "$unbound_start" ]; }

if [ -n "${FRESH_CHECK_DRY:-}" ]; then
  log "FRESH_CHECK_DRY set: scripts/setup.sh test only, no build, demo or tests"
  t0=$(date +%s)
  in_chroot 'cd /root/headroom && scripts/setup.sh test' > >(tee "$logs/setup.log") 2>&1
  alive=no
  unbound_same && alive=yes
  stray=$(for p in $(chroot_pids); do [ "$p" = "$unbound_pid" ] || echo "$p:$(tr '\0' ' ' <"/proc/$p/cmdline")"; done)
  log "setup test: $(($(date +%s) - t0))s; user's unbound running: $alive; other processes: ${stray:-none}"
  [ "$alive" = yes ] && [ -z "$stray" ]
  exit
fi

t0=$(date +%s)
log "scripts/demo.sh (first run: setup demo, release build, demo) → $logs/demo.log"
set +e
in_chroot 'cd /root/headroom && scripts/demo.sh' > >(tee "$logs/demo.log") 2>&1
demo_rc=$?
set -e
t_demo=$(($(date +%s) - t0))
unbound_after_demo=no
unbound_same && unbound_after_demo=yes

t0=$(date +%s)
log "CI=true scripts/test.sh (setup test, build, every test) → $logs/test.log"
set +e
in_chroot 'cd /root/headroom && CI=true scripts/test.sh' >"$logs/test.log" 2>&1
test_rc=$?
set -e
t_test=$(($(date +%s) - t0))
unbound_after_test=no
unbound_same && unbound_after_test=yes
answers=$(in_chroot "dig +short +time=2 +tries=1 @127.0.0.1 -p $port resolver.user.test A" 2>/dev/null || true)

# Other daemons left behind in the chroot (a package's service started, a test's stray process).
stray=$(for p in $(chroot_pids); do [ "$p" = "$unbound_pid" ] || echo "$p:$(tr '\0' ' ' <"/proc/$p/cmdline" 2>/dev/null)"; done)

passed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^passed/) s += $i } END { print s + 0 }' "$logs/test.log")
failed=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) if ($(i+1) ~ /^failed/) s += $i } END { print s + 0 }' "$logs/test.log")
skips=$(grep -c '^SKIP' "$logs/test.log" || true)
report=no
grep -q '^PEAK/S is the busiest' "$logs/demo.log" && report=yes

ok=no
if [ "$demo_rc" -eq 0 ] && [ "$report" = yes ] && [ "$test_rc" -eq 0 ] && [ "$failed" -eq 0 ] &&
  [ "$skips" -eq 0 ] && [ "$passed" -gt 0 ] && [ "$unbound_after_demo" = yes ] &&
  [ "$unbound_after_test" = yes ] && [ "$answers" = 127.0.0.42 ]; then
  ok=yes
fi
{
  echo
  echo "fresh-check $suite: $branch at ${commit:0:12}"
  echo "  debootstrap: ${t_boot}s"
  echo "  scripts/demo.sh (first run): ${t_demo}s, exit $demo_rc, report printed: $report"
  echo "  CI=true scripts/test.sh: ${t_test}s, exit $test_rc, $passed passed, $failed failed, $skips SKIP lines"
  # (No failures is the good case: grep finding nothing must not end the summary.)
  grep -E '^(failures:|    [a-z_:]+$|error: )' "$logs/test.log" | sed 's/^/    /' | head -40 || true
  echo "  user's unbound pid $unbound_pid (127.0.0.1:$port): running after demo: $unbound_after_demo, after tests: $unbound_after_test, answers: ${answers:-none}"
  [ -z "$stray" ] || echo "  left running in the chroot (stopped now): $(echo "$stray" | tr '\n' ';')"
  echo "  result: $([ $ok = yes ] && echo PASS || echo FAIL)"
} | tee "$logs/summary.txt"
[ "$ok" = yes ]
}
main "$@"
exit
