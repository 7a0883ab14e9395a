#!/usr/bin/env bash
# Installs the Debian packages factvae needs (R, Seurat, reticulate, GenomicRanges, testthat,
# knitr/rmarkdown, pandoc). Idempotent: apt runs only when a package is missing.
set -euo pipefail
packages=(r-base-core r-cran-seurat r-cran-seuratobject r-cran-reticulate r-bioc-genomicranges
  r-bioc-iranges r-bioc-s4vectors r-cran-matrix r-cran-testthat r-cran-knitr r-cran-rmarkdown
  r-cran-roxygen2 pandoc)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "setup-system: all Debian packages present"
  exit 0
fi
echo "setup-system: installing ${missing[*]}"
sudo_cmd=""
[ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
$sudo_cmd apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${missing[@]}"
