#!/usr/bin/env bash
# `vitruvian bench --quick` on 2 ranks: every section present in bench.json with its method,
# figures and verdicts; collectives' results correct and both paths timed at every size; the
# storage, training, inference and scaling figures positive and consistent; bench.html a whole
# page holding every verdict and a chart per measured section; a bad section name and scaling
# without its inputs refused in one line.
# Usage: bench_cli.sh VITRUVIAN MPIRUN WORKDIR
set -euo pipefail
vit=$1
mpirun=$2
work=$3
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$here/cli_helpers.sh"
prepare_workdir "$work"

expect_exit 0 bench.err "$mpirun" -np 2 "$vit" --threads 1 bench --quick --out out --storage-dir storage
grep -q "^bench: out/bench.html" bench.err.out || { cat bench.err.out; fail "no line naming the page"; }
[[ -f storage/bench_phantoms_96.h5 ]] || fail "the storage section did not write its dataset where --storage-dir says"

expect_exit 2 bad.err "$vit" bench --sections collectives,disks
grep -q "disks" bad.err || { cat bad.err; fail "an unknown section is not named"; }
expect_exit 2 scaling.err "$vit" bench --quick --out scaling_only --sections scaling
grep -q "scaling projects from the collectives and training sections" scaling.err || { cat scaling.err; fail "scaling alone not refused"; }

$py - <<'PY'
import json, os
from html.parser import HTMLParser

report = json.load(open("out/bench.json"))
m = report["machine"]
assert m["ranks"] == 2 and m["nodes"] == 1 and m["mode"] == "--quick", m
s = report["sections"]
assert list(s) == ["collectives", "storage", "training", "inference", "scaling"], list(s)
for name, section in s.items():
    assert section["method"] and section["verdicts"], name
    for v in section["verdicts"]:
        assert v["verdict"] in ("met", "not met", "for information"), v

rows = s["collectives"]["figures"]["rows"]
assert {r["op"] for r in rows} == {"allreduce", "allgather"} and len(rows) == 14, rows
assert all(r["wrong"] == 0 and r["vitruvian_us"] > 0 and r["raw_us"] > 0 and r["busbw_GBps"] > 0 for r in rows), rows
fit = s["collectives"]["figures"]["fits"][0]
assert fit["scope"] == "intra-node" and fit["alpha_us"] > 0 and fit["beta_GBps"] > 0, fit

st = s["storage"]["figures"]
assert st["reads_per_rank"] == 40 and st["MBps"] > 0 and 0 < st["of_memcpy"] < 1, st

tr = s["training"]["figures"]["rows"]
assert [r["ranks"] for r in tr] == [1, 2], tr
assert tr[0]["efficiency"] == 1.0 and all(r["voxels_per_s"] > 0 and r["step_s"] > 0 for r in tr), tr
assert tr[1]["comm_s"] > tr[0]["comm_s"], tr  # one rank has next to nothing to reduce
assert all(r["data_wait_s"] >= 0 for r in tr), tr  # the loader fed the steps (storage ran first)
assert any(v["figure"].startswith("data wait") for v in s["training"]["verdicts"]), s["training"]["verdicts"]
assert "patch loader" in s["training"]["method"], s["training"]["method"]

inf = s["inference"]["figures"]
assert inf["campaign"]["studies"] == 4 and inf["campaign"]["done"] == 4 and inf["campaign"]["studies_per_hour"] > 0, inf
assert len(os.listdir(inf["campaign"]["output"] + "/studies")) == 4, inf
assert inf["mlperf_unet"]["windows"] == 1 and abs(inf["mlperf_unet"]["volumes_per_s"] * 27 - inf["mlperf_unet"]["windows_per_s"]) < 1e-9, inf

sc = s["scaling"]["figures"]
assert [r["devices"] for r in sc["rows"]] == [1, 8, 64, 512], sc
assert sc["rows"][0]["efficiency"] == 1.0 and all(0 < r["efficiency"] <= 1 for r in sc["rows"]), sc
assert abs(sc["step_compute_s"] - tr[0]["step_s"]) < 1e-12 and sc["across"]["measured"] is False, sc

class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.open, self.svg, self.text = [], 0, []
    def handle_starttag(self, tag, attrs):
        if tag not in ("meta", "br"):
            self.open.append(tag)
        self.svg += tag == "svg"
    def handle_endtag(self, tag):
        assert self.open and self.open[-1] == tag, f"</{tag}> closes {self.open[-1:]}"
        self.open.pop()
    def handle_data(self, data):
        self.text.append(data)
page = Page()
page.feed(open("out/bench.html").read())
assert not page.open, page.open
text = " ".join(page.text)
assert page.svg == 3, page.svg  # collectives, training, scaling
for section in s.values():
    for v in section["verdicts"]:
        assert v["figure"] in text, v["figure"]
print("bench --quick: 5 sections,", sum(len(x["verdicts"]) for x in s.values()), "verdicts")
PY
