#!/usr/bin/env bash
# `vitruvian infer` with a real Orthanc (tests/tools/orthanc.sh) as source and destination, as a
# hospital engineer runs it: studies stored into the PACS, a campaign on 2 ranks that queries it
# (C-FIND / QIDO-RS), retrieves each study on the rank that takes it (C-GET / WADO-RS) into a
# cache it removes afterwards, skips the non-image objects with a note, and sends the DICOM
# outputs back into the same study (C-STORE / STOW-RS); a rerun skips the done studies. Faults:
# the PACS unreachable or rejecting the association (exit 2 before any work, one line), a
# credentials file open to others, a query that matches nothing, a retrieval that fails (a
# failed study, the other done).
# The DICOM SEG/SR outputs appear under the study's StudyInstanceUID, a forced rerun leaves the
# instance count unchanged, and a PACS that refuses them fails the study with its status while
# the local outputs stay, and a rerun sends them.
# Usage: pacs_campaign.sh VITRUVIAN MPIRUN WRITE_TEST_DICOM WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
writer=$3
work=$4
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/../cli_helpers.sh"
source "$here/../../tools/orthanc.sh"
prepare_workdir "$work"
study1=1.2.826.0.1.3680043.2.1125.1.1
study2=1.2.826.0.1.3680043.2.1125.1.2

# Studies into the PACS (two studies; the first with a structured report and a presentation state).
"$writer" data
$py "$here/pacs_data.py" data refuse
orthanc_start "$work/orthanc" alice:secret
orthanc_store data || fail "storescu could not fill the PACS"
instances() { orthanc_rest "/studies/$(orthanc_lookup "$1")/instances" | $py -c 'import json,sys; print(len(json.load(sys.stdin)))'; }
[[ $(instances $study1) == 17 && $(instances $study2) == 3 ]] || fail "the PACS holds $(instances $study1) + $(instances $study2) instances, expected 17 + 3"

# A small model (a few steps on phantoms).
cat >train.yaml <<'YAML'
data: {dataset: p.h5, channels: [cta], classes: [lung_left, lung_right], validation_studies: 1, patch: [16, 16, 16], batch_size: 1, workers: 1}
model: {stages: 2, base_features: 2}
train: {steps: 1, validate_every: 0, checkpoint_every: 1, run_dir: run}
YAML
expect_exit 0 phantom.err "$vit" phantom --kind chest-cardiac --studies 2 --shape 24,32,32 --out p.h5 --threads 1
expect_exit 0 train.err "$vit" --config train.yaml --threads 1 train

# The DICOM outputs sent back.
outputs="[hdf5, dicom_seg, dicom_sr]"

dimse="{protocol: dimse, host: 127.0.0.1, port: $ORTHANC_DICOM_PORT, aet: $ORTHANC_SCU_AET, called_aet: $ORTHANC_AET, timeout_s: 10}"
cat >credentials.yaml <<YAML
user: alice
password: secret
YAML
chmod 600 credentials.yaml
web="{protocol: dicomweb, url: '$ORTHANC_URL', credentials_file: credentials.yaml, timeout_s: 10}"
campaign() {  # campaign FILE OUTPUT SOURCE STORE_TO [QUERY]
  cat >"$1" <<YAML
output: $2
outputs: $outputs
source:
  pacs: ${3%\}}, query: {${5:-modality: CT}}}
store_to: $4
routes:
  - {name: organs, model: run/model, modality: CT}
YAML
}

# check_out OUT: both studies done under their StudyInstanceUIDs, non-image objects noted, cache gone.
check_out() {
  $py - "$1" "$study1" "$study2" <<'PY'
import json, os, re, sys
out, s1, s2 = sys.argv[1:]
s = json.load(open(f"{out}/campaign.json"))
assert s["done"] == 2 and s["failed"] == [], s
assert sorted(s["done_studies"]) == sorted([s1, s2]), s["done_studies"]
r = json.load(open(f"{out}/studies/{s1}/report.json"))
notes = r["notes"]
# The SR stored with the data; on the second protocol's run also the SR the first run sent back.
assert any(re.fullmatch(r"left out [12] non-image object\(s\) of the study \(SR\)", n) for n in notes), notes
assert any("left out 1 non-image object(s) of the study (PR)" in n for n in notes), notes
assert r["routes"]["organs"]["series"] == ["ct_abdomen_1_0mm"], r["routes"]["organs"]["series"]
cache = f"{out}/.cache"
assert not os.path.exists(cache) or os.listdir(cache) == [], os.listdir(cache)
PY
}

for protocol in dimse web; do
  [[ $protocol == dimse ]] && endpoint=$dimse || endpoint=$web
  campaign $protocol.yaml out_$protocol "$endpoint" "$endpoint"
  expect_exit 0 $protocol.err "$mpirun" -np 2 "$vit" infer --campaign $protocol.yaml
  check_out out_$protocol
  grep -q "campaign: 2 studies, 0 already done, 2 to run on 2 ranks" $protocol.err || { cat $protocol.err; fail "$protocol: not 2 studies"; }
  expect_exit 0 $protocol.again.err "$mpirun" -np 2 "$vit" infer --campaign $protocol.yaml
  grep -q "campaign: 2 studies, 2 already done, 0 to run" $protocol.again.err || { cat $protocol.again.err; fail "$protocol: rerun redid studies"; }
done

# One rank, two studies: the second is retrieved while the first runs (largest first: study1).
campaign ahead.yaml out_ahead "$dimse" "$dimse"
expect_exit 0 ahead.err "$vit" --log-level debug infer --campaign ahead.yaml
$py - "$study1" "$study2" <<'PY'
import sys
s1, s2 = sys.argv[1:]
lines = open("ahead.err").read().splitlines()
at = lambda text: next(i for i, l in enumerate(lines) if text in l)
assert at(f"retrieving study {s2}") < at(f"study {s1} done on rank 0"), "the next study was not retrieved ahead"
assert at(f"study {s1} done on rank 0") < at(f"study {s2} done on rank 0"), "largest first"
PY

# The query selects: one study by accession (DICOMweb) and by StudyInstanceUID (DIMSE).
campaign acc.yaml out_acc "$web" "$web" "accession: ACC-2"
expect_exit 0 acc.err "$vit" infer --campaign acc.yaml
grep -q "campaign: 1 studies, 0 already done, 1 to run" acc.err || { cat acc.err; fail "accession query"; }
campaign uid.yaml out_uid "$dimse" "$dimse" "study_uids: [$study1], study_date: 20240101-20241231"
expect_exit 0 uid.err "$vit" infer --campaign uid.yaml
[[ -f out_uid/studies/$study1/report.json && ! -e out_uid/studies/$study2 ]] || fail "uid query: $(ls out_uid/studies)"

# The results are in the PACS under the same study; a forced rerun adds nothing.
sent=$(ls out_dimse/studies/$study1/*.dcm out_web/studies/$study1/*.dcm | wc -l)
n1=$(instances $study1)
[[ $n1 -gt 17 ]] || fail "no result reached the PACS (study holds $n1 instances)"
expect_exit 0 force.err "$mpirun" -np 2 "$vit" infer --campaign dimse.yaml --force
[[ $(instances $study1) == "$n1" ]] || fail "a forced rerun changed the PACS's instance count ($n1 -> $(instances $study1)); sent $sent"
# A PACS that refuses them (it refuses what calling AE VITRUVIAN-RO sends): failed, outputs kept.
refusing="{protocol: dimse, host: 127.0.0.1, port: $ORTHANC_DICOM_PORT, aet: VITRUVIAN-RO, called_aet: $ORTHANC_AET}"
campaign refused.yaml out_refused "$dimse" "$refusing" "study_uids: [$study2]"
expect_exit 1 refused.err "$vit" infer --campaign refused.yaml
grep -q "status 0xa7" out_refused/failed/$study2.json || { cat out_refused/failed/$study2.json; fail "no status in the failure"; }
[[ -f out_refused/studies/$study2/report.json ]] || fail "the local outputs of a refused study are gone"
# Rerun to a PACS that takes them: sent without recomputing, the failure record gone. The
# earlier campaigns sent the same SR (the same UID): removed first, so only the resend can bring it.
sr_uid=$($py -c 'import pydicom,sys; print(pydicom.dcmread(sys.argv[1]).SOPInstanceUID)' out_refused/studies/$study2/report.sr.dcm)
for id in $(orthanc_lookup "$sr_uid"); do orthanc_rest "/instances/$id" -X DELETE >/dev/null; done
[[ -z $(orthanc_lookup "$sr_uid") ]] || fail "the SR could not be removed from the PACS"
campaign refused.yaml out_refused "$dimse" "$dimse" "study_uids: [$study2]"
expect_exit 0 resent.err "$vit" infer --campaign refused.yaml
grep -q "campaign: 1 studies, 0 already done, 1 to run" resent.err || { cat resent.err; fail "the refused results were not sent again"; }
[[ ! -e out_refused/failed/$study2.json ]] || fail "the failure record of the resent study is still there"
[[ -n $(orthanc_lookup "$sr_uid") ]] || fail "the resent SR is not in the PACS"

# Faults at set-up: exit 2 before any work, one line naming the PACS and the peer's reason.
campaign closed.yaml out_closed "{protocol: dimse, host: 127.0.0.1, port: $(free_port), aet: $ORTHANC_SCU_AET, called_aet: $ORTHANC_AET, timeout_s: 5}" "$dimse"
expect_exit 2 closed.err "$mpirun" -np 2 "$vit" infer --campaign closed.yaml
grep -Eq "PacsError.*DIMSE VITRUVIAN -> ORTHANC at 127.0.0.1:[0-9]+: cannot associate.*refused" closed.err || { cat closed.err; fail "unreachable PACS line"; }
[[ ! -e out_closed/studies ]] || fail "work began against an unreachable PACS"
campaign rejected.yaml out_rejected "${dimse/called_aet: $ORTHANC_AET/called_aet: NOBODY}" "$dimse"
expect_exit 2 rejected.err "$vit" infer --campaign rejected.yaml
grep -q "VITRUVIAN -> NOBODY at 127.0.0.1:$ORTHANC_DICOM_PORT: association rejected: .*Called AE Title Not Recognized" rejected.err ||
  { cat rejected.err; fail "rejected association line"; }
chmod 644 credentials.yaml
campaign open.yaml out_open "$web" "$dimse"
expect_exit 2 open.err "$vit" infer --campaign open.yaml
grep -q "credentials.yaml: credentials_file is open to group or others (mode 0644); run chmod 600 on it" open.err || { cat open.err; fail "open credentials line"; }
chmod 600 credentials.yaml
campaign none.yaml out_none "$web" "$web" "accession: NO-SUCH"
expect_exit 2 none.err "$vit" infer --campaign none.yaml
grep -q "no study matches the query (source.pacs.query)" none.err || { cat none.err; fail "empty query line"; }

# A retrieval that fails (injected on rank 0's first): that study fails, the other is done.
campaign fault.yaml out_fault "$dimse" "$dimse"
export VITRUVIAN_FAULT='pacs.retrieve@0:throw'
expect_exit 1 fault.err "$mpirun" -np 2 "$vit" infer --campaign fault.yaml
unset VITRUVIAN_FAULT
$py - <<'PY'
import json, os
s = json.load(open("out_fault/campaign.json"))
assert s["done"] == 1 and len(s["failed"]) == 1, s
failed = os.listdir("out_fault/failed")
assert len(failed) == 1, failed
record = json.load(open(f"out_fault/failed/{failed[0]}"))
assert "pacs.retrieve" in record["error"], record
assert not os.path.exists("out_fault/.cache") or os.listdir("out_fault/.cache") == [], os.listdir("out_fault/.cache")
PY
# A retrieval that times out: a proxy passes the echo and the query, then holds the later
# associations silent; on one rank the first study's retrieval gets through, the second's stalls
# and fails after timeout_s, the first is done.
$py "$here/stall_proxy.py" 127.0.0.1 "$ORTHANC_DICOM_PORT" 3 proxy.port &
proxy=$!
trap 'kill $proxy 2>/dev/null || true; orthanc_stop' EXIT
for _ in $(seq 50); do [[ -s proxy.port ]] && break; sleep 0.1; done
stalling="{protocol: dimse, host: 127.0.0.1, port: $(cat proxy.port), aet: $ORTHANC_SCU_AET, called_aet: $ORTHANC_AET, timeout_s: 3}"
campaign stall.yaml out_stall "$stalling" "$dimse"
started=$SECONDS
expect_exit 1 stall.err "$vit" infer --campaign stall.yaml
(( SECONDS - started < 60 )) || fail "the stalled retrieval was not given up within its timeout"
kill $proxy 2>/dev/null || true
$py - <<'PY'
import json, os
s = json.load(open("out_stall/campaign.json"))
assert s["done"] == 1 and len(s["failed"]) == 1, s
record = json.load(open(f"out_stall/failed/{os.listdir('out_stall/failed')[0]}"))
assert record["stage"] == "process" and "127.0.0.1" in record["error"], record
print("stalled retrieval:", record["error"])
assert not os.path.exists("out_stall/.cache") or os.listdir("out_stall/.cache") == [], os.listdir("out_stall/.cache")
PY
echo "pacs campaign ok"
