#!/usr/bin/env bash
# Install everything autotag needs on a Debian/Ubuntu machine, idempotently and quickly on a
# second run: system packages (apt-get), the project virtualenv (pip, cached in ~/.cache/pip),
# and Apache Storm assembled from Maven Central (cached in ~/.m2 and ~/.cache/autotag).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

APT_PACKAGES=(
  openjdk-17-jdk-headless maven leiningen          # Storm daemons, storm.home assembly, sparse's jar
  redis-server postgresql postgresql-server-dev-15 # queue, tag store, the dot_product() C function
  gcc make libc6-dev                               # loopback bind shim, dot_product()
  python3-venv                                     # the project virtualenv
  opencv-data                                      # Haar cascades (face / person tag)
  dataset-fashion-mnist tuxpaint-stamps-default    # real labelled images for training and tests
  gcompris-qt-data                                 # real labelled photos: concept development set
  wordnet-base                                     # WordNet 3.0 nouns: ImageNet leaves -> concepts
  opencv-doc                                       # sample photos (concept thresholds), video clips (vtest.avi)
  chromium                                         # the web page's browser tests (Playwright drives it)
  curl procps iproute2
  docker-compose                                   # `docker-compose config` checks docker/ (no engine needed)
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "==> apt-get install ${missing[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

VENV=$ROOT/virtualenvs/autotag
REQ=$ROOT/virtualenvs/autotag.txt
STAMP=$VENV/.requirements.sha256
want=$(cat "$REQ" pyproject.toml | sha256sum | cut -d' ' -f1)
if [ ! -x "$VENV/bin/python" ]; then
  echo "==> creating virtualenv $VENV"
  python3 -m venv "$VENV"
fi
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "==> pip install -r $REQ"
  "$VENV/bin/pip" install -q --upgrade pip
  "$VENV/bin/pip" install -q -r "$REQ"
  # timm only for its ImageNet class-name data files (it would otherwise pull in torch).
  "$VENV/bin/pip" install -q --no-deps timm==1.0.31
  "$VENV/bin/pip" install -q --no-deps -e "$ROOT"
  echo "$want" > "$STAMP"
fi
# streamparse refuses to drive Leiningen as root unless LEIN_ROOT is set.
if [ "$(id -u)" -eq 0 ] && ! grep -q LEIN_ROOT "$VENV/bin/activate"; then
  echo 'export LEIN_ROOT=1  # autotag: streamparse runs lein, which asks for confirmation as root' >> "$VENV/bin/activate"
fi

echo "==> Storm storm.home (Maven Central) and Flux"
"$VENV/bin/python" - <<'PY'
from autotag.config import settings
from autotag.ops.daemons.storm_home import ensure_loopback_shim, ensure_storm_cli, ensure_storm_home
from autotag.ops.topology import ensure_flux
s = settings()
print("   ", ensure_storm_home(s))
print("   ", ensure_flux(s))
print("   ", ensure_storm_cli(s))  # storm-core: the `storm` command's classes
print("   ", ensure_loopback_shim(s))
PY
echo "==> Leiningen dependencies (for sparse submit's jar)"
(export LEIN_ROOT=1; lein deps >/dev/null)
echo "==> dependencies ready"
