#!/usr/bin/env bash
# Runs the PACS client tests (pacs_client_test, then pacs_store_test) against a real Orthanc started here on free
# loopback ports (tests/tools/orthanc.sh, basic auth alice:secret for DICOMweb), with studies
# written by write_test_dicom and edited by pacs_data.py.
# Usage: pacs_clients.sh PACS_CLIENT_TEST WRITE_TEST_DICOM WORKDIR
set -euo pipefail
test_binary=$1
writer=$2
work=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../cli_helpers.sh"
source "$here/../../tools/orthanc.sh"
prepare_workdir "$work"
"$writer" data
$py "$here/pacs_data.py" data refuse
orthanc_start "$work/orthanc" alice:secret
export ORTHANC_DICOM_PORT ORTHANC_AET ORTHANC_SCU_AET ORTHANC_URL
export PACS_TEST_DATA="$work/data" PACS_TEST_REFUSE="$work/refuse" PACS_TEST_WORK="$work" PACS_TEST_CLOSED_PORT=$(free_port)
export VITRUVIAN_PACS_USER=alice VITRUVIAN_PACS_PASSWORD=secret
"$test_binary" --gtest_filter='-*PacsStore*'
"$test_binary" --gtest_filter='*PacsStore*'  # after: it adds a third study
