#!/usr/bin/env bash
# pmserver as a service, as `cmake --install` leaves it: the systemd unit
# (checked by systemd-analyze: it parses, its ExecStart exists, and its
# hardening scores an exposure of 2.0 or better), its system user
# (systemd-sysusers into a scratch root) and its settings file (read by
# the installed pmserver; an operator's edits survive a second install).
set -euo pipefail
BUILD=$1
PREFIX=$(mktemp -d /tmp/pmcr-service.XXXXXX)
trap 'rm -rf "$PREFIX"' EXIT
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
UNIT=$PREFIX/lib/systemd/system/pmserver.service
CONFIG=$PREFIX/etc/pmcr/pmserver.toml
for f in "$UNIT" "$PREFIX/lib/sysusers.d/pmcr.conf" "$CONFIG"; do
  [[ -f $f ]] || { echo "missing from the install: ${f#"$PREFIX"/}"; exit 1; }
done
grep -qx "ExecStart=$PREFIX/bin/pmserver --config $CONFIG" "$UNIT" ||
  { echo "the unit does not run the installed pmserver with the installed settings:"; grep ExecStart "$UNIT"; exit 1; }

# systemd-analyze reports most mistakes as warnings with status 0: any
# output at all is a failure. --man=no: pmserver(8) need not be installed
# on the machine running the tests.
out=$(systemd-analyze verify --man=no --generators=no "$UNIT" 2>&1) || { echo "systemd-analyze verify: $out"; exit 1; }
[[ -z $out ]] || { echo "systemd-analyze verify warns: $out"; exit 1; }
out=$(systemd-analyze security --offline=true --threshold=20 "$UNIT" 2>&1) ||
  { echo "the unit's exposure is above 2.0:"; grep -E 'Overall|✗' <<<"$out" | head -20; exit 1; }

# Its user, made by systemd-sysusers in a scratch root.
mkdir -p "$PREFIX/root/etc"
out=$(systemd-sysusers --root="$PREFIX/root" "$PREFIX/lib/sysusers.d/pmcr.conf" 2>&1) ||
  { echo "systemd-sysusers refuses pmcr.conf: $out"; exit 1; }
grep -q '^pmcr:x:[0-9]*:[0-9]*:.*:/var/lib/pmcr:' "$PREFIX/root/etc/passwd" ||
  { echo "systemd-sysusers made no pmcr user:"; cat "$PREFIX/root/etc/passwd"; exit 1; }

# The installed settings are pmserver's own: every key known, every value
# accepted.
out=$("$PREFIX/bin/pmserver" --config "$CONFIG" --print-config 2>&1) || { echo "pmserver refuses $CONFIG: $out"; exit 1; }
grep -qx 'pool="/var/lib/pmcr/pmcr.pool"' <<<"$out" || { echo "pmserver did not read $CONFIG: $out"; exit 1; }
grep -qx 'auth="munge"' <<<"$out" || { echo "pmserver did not read auth from $CONFIG: $out"; exit 1; }

# An operator's settings are kept by the next install; the new defaults go
# beside them.
echo 'quota-open = 7' >>"$CONFIG"
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
grep -qx 'quota-open = 7' "$CONFIG" || { echo "a second install overwrote the operator's $CONFIG"; exit 1; }
[[ -f $CONFIG.new ]] || { echo "a second install did not leave the new settings as pmserver.toml.new"; exit 1; }
echo "pmserver.service (verified, exposure <= 2.0), its sysusers entry and its settings file: ok"
