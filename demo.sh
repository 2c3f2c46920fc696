#!/usr/bin/env bash
# The main job, from a fresh clone: set up, serve the demo models committed in model_repository/
# with a real Triton server, run a 64-video sampling job and the reconstruction of a held-out
# clip over gRPC, write mp4 files and GIF preview grids, stop the server, say where it all is.
#
#   ./demo.sh                 # outputs in demo_out/
#   OUT=/tmp/x ./demo.sh
set -euo pipefail
cd "$(dirname "$0")"
OUT=${OUT:-demo_out}
REPOSITORY=${REPOSITORY:-model_repository}
SAMPLE_MODEL=${SAMPLE_MODEL:-mnist_g3an_sample}
RECONSTRUCT_MODEL=${RECONSTRUCT_MODEL:-mnist_encgan3_reconstruct}

./setup.sh
PY=.venv/bin/python
mkdir -p "$OUT"
for model in "$SAMPLE_MODEL" "$RECONSTRUCT_MODEL"; do
  if [ ! -f "$REPOSITORY/$model/config.pbtxt" ]; then
    echo "demo.sh: $REPOSITORY/$model is missing; rebuild the demo models as model_repository/README.md says" >&2
    exit 1
  fi
done
$PY -m export.check "$REPOSITORY" --quality "$SAMPLE_MODEL" "$RECONSTRUCT_MODEL"

echo "== a held-out Moving-MNIST clip (real MNIST test digits) to reconstruct"
$PY -m train.data moving-mnist --split test --count 1 --out "$OUT/real"

echo "== starting the embedded Triton server"
$PY -m serving up --repository "$REPOSITORY" --grpc-port 0 --http-port 0 --metrics-port 0 \
  --log-file "$OUT/tritonserver.log" > "$OUT/serving.out" 2>&1 &
SERVER=$!
trap 'kill -TERM $SERVER 2>/dev/null; wait $SERVER 2>/dev/null || true' EXIT
for _ in $(seq 600); do
  grep -q "^ready in" "$OUT/serving.out" 2>/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$OUT/serving.out" >&2; exit 1; }
  sleep 0.5
done
grep -q "^ready in" "$OUT/serving.out" || { echo "demo.sh: server not ready after 300 s" >&2; exit 1; }
cat "$OUT/serving.out"
URL=$(sed -n "s/^ready in .*grpc \([^,]*\),.*/\1/p" "$OUT/serving.out")

echo "== sampling job: 64 videos (seeds 0-63, digit class 7)"
$PY -m clients.sample --url "$URL" --model "$SAMPLE_MODEL" --seeds 0-63 --label 7 --batch-size 16 \
  --format mp4 --out "$OUT/samples"
echo "== GIF preview grids: fixed appearance × 4 motions, and fixed motion × 4 appearances"
$PY -m clients.explore --url "$URL" --model "$SAMPLE_MODEL" --mode fix-appearance --seed 0 1 2 3 --vary 10-13 \
  --label 7 --scale 2 --out "$OUT/preview_fixed_appearance.gif"
$PY -m clients.explore --url "$URL" --model "$SAMPLE_MODEL" --mode fix-motion --seed 0 1 2 3 --vary 10-13 \
  --label 7 --scale 2 --out "$OUT/preview_fixed_motion.gif"
echo "== reconstruction of the held-out clip (encode → decode ensemble)"
$PY -m clients.reconstruct --url "$URL" --model "$RECONSTRUCT_MODEL" "$OUT/real/clip0000.mp4" \
  --side-by-side --out "$OUT/reconstruction.mp4"

kill -TERM $SERVER; wait $SERVER || true; trap - EXIT
echo "== done; server stopped"
echo "samples:        $OUT/samples/ ($(ls "$OUT/samples" | grep -c '\.mp4$') mp4 files, manifest.json)"
echo "previews:       $OUT/preview_fixed_appearance.gif $OUT/preview_fixed_motion.gif"
echo "reconstruction: $OUT/reconstruction.mp4 (input | reconstruction), input $OUT/real/clip0000.mp4"
echo "server log:     $OUT/tritonserver.log"
