# The sweep behind notebook 19's table (issue 10): bash bench/demo_sweep.sh bench/demo_sweep_list.txt 545 on the H100 host, carry .whl
# It ran against the demo of commit 7452243 (base trained inside run_demo); to rerun it: git checkout 7452243 -- cosmos_nb/demo.py
# usage: bash .sweep/sweep.sh LISTFILE SECONDS ; each line of LISTFILE: NAME MODE [k=v ...] [-- overrides]
source bench/device_env.sh
mkdir -p $OUT/png /tmp/logs
while read -r name rest; do
  [ -z "$name" ] && continue
  (python3 bench/demo_sweep_variant.py $name /tmp/sw/$name $rest > /tmp/logs/$name.log 2>&1; cp /tmp/sw/$name/contact_sheet.png $OUT/png/$name.png 2>/dev/null) &
done < $1
sleep 5
end=$((SECONDS + $2))
while [ $SECONDS -lt $end ] && [ -n "$(jobs -r)" ]; do sleep 10; done
for f in /tmp/logs/*.log; do echo "== $f"; tr '\r' '\n' < $f | grep -v Warning | grep -a "it/s\|RESULT\|Error" | tail -2 | cut -c1-300; done
cat /tmp/sw/*/result.json > $OUT/results.jsonl 2>/dev/null
for d in /tmp/sw/*/runs; do for m in $d/*/*/*/metrics.jsonl; do echo "$m $(wc -l < $m)"; done; done
