#!/usr/bin/env bash
# A real Orthanc PACS for tests (sourced): started on free loopback ports with its DICOMweb plugin,
# storage and index under a folder of the build tree, and stopped on every path (EXIT trap).
#   orthanc_start DIR [USER:PASSWORD]   starts it (HTTP basic auth when a user is given) and waits
#                                       until it answers; sets ORTHANC_DICOM_PORT, ORTHANC_HTTP_PORT,
#                                       ORTHANC_AET (ORTHANC), ORTHANC_URL (its DICOMweb root),
#                                       ORTHANC_REST (its REST root) and ORTHANC_SCU_AET (VITRUVIAN:
#                                       the one calling AE title it knows, allowed to C-GET/C-STORE)
#   orthanc_stop                        stops it (also run by the EXIT trap orthanc_start sets)
#   orthanc_rest PATH [CURL_ARGS...]    a request to its REST API (with the credentials), to stdout
#   orthanc_lookup UID                  Orthanc's ids of the objects with that UID
# It refuses to store any instance whose SeriesDescription is VITRUVIAN-REFUSE, or that calling
# AE title VITRUVIAN-RO sends (a Lua filter), so tests can see a PACS refuse a C-STORE / STOW-RS.
set -euo pipefail

orthanc_bin() {
  local b
  for b in "${ORTHANC:-}" /usr/sbin/Orthanc /usr/bin/Orthanc "$(command -v Orthanc || true)"; do
    [[ -n "$b" && -x "$b" ]] && { echo "$b"; return 0; }
  done
  echo "orthanc.sh: no Orthanc executable (apt-get install orthanc orthanc-dicomweb)" >&2
  return 1
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() {
  /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

orthanc_start() {
  local dir=$1 auth=${2:-}
  local bin plugin=/usr/share/orthanc/plugins/libOrthancDicomWeb.so
  bin=$(orthanc_bin)
  [[ -f $plugin ]] || { echo "orthanc.sh: no DICOMweb plugin at $plugin" >&2; return 1; }
  rm -rf "$dir" && mkdir -p "$dir/storage" "$dir/index"
  ORTHANC_DICOM_PORT=$(free_port)
  ORTHANC_HTTP_PORT=$(free_port)
  while [[ $ORTHANC_HTTP_PORT == "$ORTHANC_DICOM_PORT" ]]; do ORTHANC_HTTP_PORT=$(free_port); done
  ORTHANC_AET=ORTHANC
  ORTHANC_SCU_AET=VITRUVIAN
  ORTHANC_URL="http://127.0.0.1:$ORTHANC_HTTP_PORT/dicom-web"
  ORTHANC_REST="http://127.0.0.1:$ORTHANC_HTTP_PORT"
  ORTHANC_CURL_AUTH=()
  local users='{}' enabled=false
  if [[ -n $auth ]]; then
    users="{\"${auth%%:*}\": \"${auth#*:}\"}"
    enabled=true
    ORTHANC_CURL_AUTH=(-u "$auth")
  fi
  cat >"$dir/refuse.lua" <<'LUA'
function ReceivedInstanceFilter(dicom, origin, info)
  if dicom.SeriesDescription == 'VITRUVIAN-REFUSE' or origin.RemoteAet == 'VITRUVIAN-RO' then
    error('refused by the test PACS')
  end
  return true
end
LUA
  cat >"$dir/orthanc.json" <<JSON
{
  "Name": "vitruvian-test",
  "StorageDirectory": "$dir/storage",
  "IndexDirectory": "$dir/index",
  "DicomAet": "$ORTHANC_AET",
  "DicomPort": $ORTHANC_DICOM_PORT,
  "HttpPort": $ORTHANC_HTTP_PORT,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": $enabled,
  "RegisteredUsers": $users,
  "DicomCheckCalledAet": true,
  "DicomCheckModalityHost": false,
  "DicomAlwaysAllowEcho": false,
  "DicomAlwaysAllowStore": false,
  "DicomModalities": { "vitruvian": { "AET": "$ORTHANC_SCU_AET", "Host": "127.0.0.1", "Port": 1,
                                      "AllowEcho": true, "AllowFind": true, "AllowGet": true,
                                      "AllowMove": true, "AllowStore": true },
                         "readonly": { "AET": "VITRUVIAN-RO", "Host": "127.0.0.1", "Port": 1 } },
  "Plugins": ["$plugin"],
  "LuaScripts": ["$dir/refuse.lua"],
  "DicomWeb": { "Enable": true, "Root": "/dicom-web/", "EnableWado": false },
  "StableAge": 1,
  "HttpServerEnabled": true,
  "DicomServerEnabled": true
}
JSON
  # TCP_NODELAY: DCMTK (inside Orthanc) turns Nagle's algorithm off, sparing a delayed ACK per message.
  TCP_NODELAY=1 "$bin" --logdir="$dir" "$dir/orthanc.json" >"$dir/stdout.log" 2>&1 &
  ORTHANC_PID=$!
  trap orthanc_stop EXIT
  local i
  for i in $(seq 1 100); do
    if curl -sf "${ORTHANC_CURL_AUTH[@]}" "$ORTHANC_REST/system" >/dev/null 2>&1; then return 0; fi
    kill -0 "$ORTHANC_PID" 2>/dev/null || { cat "$dir"/*.log >&2 || true; echo "orthanc.sh: Orthanc exited at start" >&2; return 1; }
    sleep 0.1
  done
  echo "orthanc.sh: Orthanc did not answer on $ORTHANC_REST within 10 s" >&2
  return 1
}

orthanc_stop() {
  if [[ -n ${ORTHANC_PID:-} ]]; then
    kill "$ORTHANC_PID" 2>/dev/null || true
    wait "$ORTHANC_PID" 2>/dev/null || true
    ORTHANC_PID=
  fi
}

orthanc_rest() {
  curl -sf "${ORTHANC_CURL_AUTH[@]}" "${@:2}" "$ORTHANC_REST$1"
}

# orthanc_lookup UID: Orthanc's ids of the objects with that UID (study, series or instance).
orthanc_lookup() {
  orthanc_rest /tools/lookup -X POST -d "$1" |
    /usr/bin/python3 -c 'import json,sys; print(" ".join(x["ID"] for x in json.load(sys.stdin)))'
}

# orthanc_store DIR: C-STORE every DICOM file under DIR into the running Orthanc (storescu, its
# log in store.log); on failure the log goes to stderr and the status is 1.
orthanc_store() {
  storescu -aet "$ORTHANC_SCU_AET" -aec "$ORTHANC_AET" +sd +r 127.0.0.1 "$ORTHANC_DICOM_PORT" "$1" >store.log 2>&1 ||
    { cat store.log >&2; return 1; }
}
