#!/usr/bin/env bash
# The man pages as `cmake --install` leaves them: each installed where man(1)
# finds it, each renders without a warning, each program's page documents
# every option its --help lists (--help-all: every subcommand's too), and
# pmcr(3) documents every function the public headers export and every
# error code.
set -euo pipefail
BUILD=$1 SRC=$2
PREFIX=$(mktemp -d /tmp/pmcr-man.XXXXXX)
trap 'rm -rf "$PREFIX"' EXIT
cmake --install "$BUILD" --prefix "$PREFIX" >/dev/null
MAN=$PREFIX/share/man
status=0
fail() { echo "$*"; status=1; }

for page in man8/pmserver.8 man1/pmcr.1 man1/pmcr-run.1 man1/pmcr-bench.1 man3/pmcr.3; do
  f=$MAN/$page
  [[ -s $f ]] || { fail "missing from the install: share/man/$page"; continue; }
  # groff and man report problems as warnings with status 0: any output fails.
  out=$(groff -man -ww -Tutf8 -z "$f" 2>&1) || fail "groff fails on $page: $out"
  [[ -z $out ]] || fail "groff warns about $page: $out"
  out=$(MANWIDTH=80 man --warnings -l "$f" 2>&1 >/dev/null) || fail "man -l fails on $page: $out"
  [[ -z $out ]] || fail "man warns about $page: $out"
  MANWIDTH=80 man -l "$f" 2>/dev/null | grep -q '^NAME' || fail "$page renders no NAME section"
done

# Where man looks.
for want in "8 pmserver:man8/pmserver.8" "1 pmcr:man1/pmcr.1" "1 pmcr-run:man1/pmcr-run.1" "1 pmcr-bench:man1/pmcr-bench.1" \
            "3 pmcr:man3/pmcr.3"; do
  args=${want%%:*} file=${want#*:}
  # shellcheck disable=SC2086
  got=$(MANPATH=$MAN man -w $args 2>&1) || true
  [[ $got == "$MAN/$file"* ]] || fail "man -w $args finds '$got', not $MAN/$file"
done

# Every option of every program is in its page (the roff source, with its
# escapes taken out: \- is -, \fB...\fR are fonts).
plain() { sed -e 's/\\-/-/g' -e 's/\\f[BIRP]//g' -e 's/\\(em/-/g' "$1"; }
for prog in "pmserver --help man8/pmserver.8" "pmcr --help-all man1/pmcr.1" "pmcr-run --help man1/pmcr-run.1" \
            "pmcr-bench --help-all man1/pmcr-bench.1"; do
  read -r name flag page <<<"$prog"
  text=$(plain "$MAN/$page")
  help=$(env -i PATH=/usr/bin:/bin "$PREFIX/bin/$name" "$flag" 2>&1) || { fail "$name $flag fails: $help"; continue; }
  options=$(grep -oE -- '--[a-z][a-z0-9-]+' <<<"$help" | sort -u)
  [[ $(wc -l <<<"$options") -ge 3 ]] || fail "$name $flag lists almost no options: $help"
  for opt in $options; do
    grep -qE -- "(^|[^a-z0-9-])${opt}([^a-z0-9-]|\$)" <<<"$text" || fail "$page does not document $opt (from $name $flag)"
  done
done

# pmcr(3): every exported function of the public C headers, every error code.
text=$(plain "$MAN/man3/pmcr.3")
for fn in $(grep -hoE 'PMCR_EXPORT [^(]*\b(pmcr_[a-z_]+)\(' "$SRC"/include/pmcr/*.h | grep -oE 'pmcr_[a-z_]+'); do
  grep -qE -- "\\b$fn\\b" <<<"$text" || fail "pmcr(3) does not document $fn"
done
for code in $(grep -oE '^#define PMCR_E_[A-Z_]+' "$SRC/include/pmcr/errors.h" | awk '{print $2}'); do
  grep -qF -- "$code" <<<"$text" || fail "pmcr(3) does not name $code"
done
((status == 0)) && echo "man pages: installed where man finds them, render without warnings, document every option, function and error code"
exit $status
