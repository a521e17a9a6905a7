#!/usr/bin/env bash
# Make Debian's python3-rados binding importable from a virtualenv, and
# nothing else from /usr/lib/python3/dist-packages.
#
# Usage: link-system-rados.sh <venv-dir>
#
# Putting all of /usr/lib/python3/dist-packages on the venv's path (or
# --system-site-packages) would also expose Debian's copies of twisted,
# cryptography, yaml... which could shadow the venv's own versions.  Instead
# this creates <venv>/rados-binding/ holding one symlink to the rados
# extension module and a .pth file in the venv's site-packages naming that
# directory.  The extension is built for one CPython ABI, so it refuses to
# link a binding built for another Python than the venv's.  Idempotent.
set -euo pipefail
VENV=${1:?usage: $0 <venv-dir>}
PY="$VENV/bin/python"
[ -x "$PY" ] || { echo "$PY not found" >&2; exit 1; }
SUFFIX=$("$PY" -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
SITE=$("$PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
SO=/usr/lib/python3/dist-packages/rados$SUFFIX
if [ ! -e "$SO" ]; then
  echo "no $SO: install Debian's python3-rados (built for the venv's Python, $SUFFIX);" \
       "found: $(ls /usr/lib/python3/dist-packages/rados*.so 2>/dev/null || echo nothing)" >&2
  exit 1
fi
DIR=$(cd "$VENV" && pwd)/rados-binding
mkdir -p "$DIR"
ln -sfn "$SO" "$DIR/rados$SUFFIX"
echo "$DIR" > "$SITE/lightningstor-rados-binding.pth"
"$PY" -c 'import rados; print("rados binding:", rados.__file__)'
