#!/usr/bin/env bash
# Installs what Vitruvian needs to build, test and run, from Debian's packages. Idempotent:
# when everything is installed it prints nothing and changes nothing. Runs apt-get as root
# (directly, or through sudo when started by another user).
#   launch/setup.sh --check   only reports: silent and exit 0 when all is there, else lists
#                             the missing packages and exits 1.
set -euo pipefail

packages=(
  build-essential cmake ccache pkg-config
  libtorch-dev libopenblas0-openmp      # LibTorch (CPU build) and its headers; OpenBLAS behind its BLAS calls
  libopenmpi-dev openmpi-bin            # MPI runtime and mpirun
  libhdf5-dev                           # volume store
  libnifti2-dev libdcmtk-dev zlib1g-dev # NIfTI and DICOM import/export, chunk decompression
  hdf5-filter-plugin liblz4-dev         # LZ4-compressed datasets (write, and decode chunks directly)
  python3-h5py python3-nibabel python3-torch python3-scipy  # peers for side-by-side checks and benchmarks
  libyaml-cpp-dev nlohmann-json3-dev    # config and reports
  libcli11-dev libspdlog-dev libfmt-dev # command line and logging
  libpng-dev                            # previews and plots
  libgtest-dev libbenchmark-dev         # tests and benchmarks
  clang libclang-rt-dev lld             # the fuzz harnesses (tests/fuzz): clang with libFuzzer, ASan, UBSan; lld
  libdnnl-dev                           # oneDNN (LibTorch's own CPU convolutions), called directly by a benchmark
  libcurl4-openssl-dev                  # DICOMweb (QIDO-RS, WADO-RS, STOW-RS)
  orthanc orthanc-dicomweb              # the PACS the tests store into and query (DIMSE and DICOMweb), on loopback
  dicom3tools dcmtk                     # independent DICOM validator (dciodvfy) and DCMTK's command-line tools
  python3-pydicom dcm2niix              # independent decoding of DICOM objects, independent DICOM -> NIfTI
  slurm-wlm munge                       # the scheduler the Slurm tests start as a one-node cluster on loopback
)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
((${#missing[@]} == 0)) && exit 0
if [[ "${1:-}" == "--check" ]]; then
  echo "setup: missing ${missing[*]}" >&2
  exit 1
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
  command -v sudo >/dev/null || { echo "setup: need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=(sudo)
fi
log=$(mktemp /tmp/vitruvian-setup.XXXXXX.log)
echo "setup: installing ${missing[*]} (log: $log)"
if ! { "${sudo[@]}" apt-get update -qq &&
       "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
     >"$log" 2>&1; then
  echo "setup: apt-get failed; last lines of $log:" >&2
  tail -n 20 "$log" >&2
  exit 1
fi
echo "setup: done"
