# Issue 10's GPU demo on the H100 host: `cosmos-nb demo --device cuda --size small` as a user runs it, then (if it finished in time) the gpu-marked demo test.
# usage (carry .whl): bash bench/demo_small_gpu.sh SECONDS   -> $OUT/{pytest.log, demo.log, summary.json, contact_sheet.png, ...}
source bench/device_env.sh
nvidia-smi --query-gpu=name,driver_version --format=csv,noheader
( /usr/bin/time -v python3 -m cosmos_nb.cli demo --device cuda --size small --out /tmp/small ) > /tmp/demo.log 2>&1 &
end=$((SECONDS + $1))
while [ $SECONDS -lt $end ] && [ -n "$(jobs -r)" ]; do sleep 5; done
tr '\r' '\n' < /tmp/demo.log | grep -av Warning | awk 'length < 400' > /tmp/demo_lines.log
(grep -av '%|' /tmp/demo_lines.log | tail -60; grep -a '100%|' /tmp/demo_lines.log | sort -u; tail -3 /tmp/demo_lines.log) > $OUT/demo.log
cp /tmp/small/summary.json /tmp/small/contact_sheet.png /tmp/small/loss_curve.png $OUT/ 2>/dev/null
cp /tmp/small/pretrain/base/info.json $OUT/base_info.json 2>/dev/null
[ -z "$(jobs -r)" ] && python3 -m pytest -q -p no:cacheprovider -m gpu tests/test_demo.py 2>&1 | tail -4 | tee $OUT/pytest.log
for m in $(find /tmp/small -name metrics.jsonl); do echo "$m $(wc -l < $m) rows; last: $(tail -1 $m)"; done | tee $OUT/metrics_tail.txt
