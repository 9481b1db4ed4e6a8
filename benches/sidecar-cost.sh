#!/bin/bash
# Usage (root, gunicorn on PATH, e.g. the project .venv): benches/sidecar-cost.sh AGENT [SECS] [RATE]
# Cost of one sidecar: `run` for SECS in a pod-shaped netns whose pid namespace holds only the
# pod (unshare --pid: gunicorn with 4 sync workers + the agent, as with shareProcessNamespace),
# with RATE requests/s from outside; prints the agent's VmHWM, VmRSS and CPU seconds.
set -e
AGENT=$1; SECS=${2:-60}; RATE=${3:-20}
NS=hr-cost-$$; PEER=hr-costp-$$
ip netns add $NS; ip netns add $PEER
cleanup() { for p in $(ip netns pids $NS) $(ip netns pids $PEER); do kill $p 2>/dev/null; done; sleep 0.5; ip netns del $NS; ip netns del $PEER; }
trap cleanup EXIT
ip -n $NS link set lo up
ip -n $NS link add eth0 type veth peer name p0 netns $PEER
ip -n $NS addr add 10.244.0.5/24 dev eth0; ip -n $NS link set eth0 up
ip -n $PEER addr add 10.244.0.1/24 dev p0; ip -n $PEER link set p0 up
D=$(mktemp -d)
printf 'def app(e, s):\n    s("200 OK", [("Content-Length", "3")])\n    return [b"ok\\n"]\n' > $D/app.py
ip netns exec $NS unshare --pid --fork --mount-proc bash -c "gunicorn --workers 4 --bind 10.244.0.5:8000 --chdir $D app:app >/dev/null 2>&1 & sleep 3; exec $AGENT --mode sidecar --imds-endpoint http://127.0.0.1:9 --metrics-listen 127.0.0.1:9465 run >/dev/null 2>$D/agent.log" &
sleep 5
PID=$(for p in $(ip netns pids $NS); do [ "$(cat /proc/$p/comm)" = headroom-agent ] && echo $p; done | head -1)
N=$((SECS*RATE))
[ "$RATE" = 0 ] && sleep $SECS
[ "$RATE" = 0 ] || ip netns exec $PEER python3 -c "
import time, urllib.request
n, rate = $N, $RATE
t0 = time.monotonic()
for i in range(n):
    urllib.request.urlopen('http://10.244.0.5:8000/', timeout=2).read()
    d = t0 + (i + 1) / rate - time.monotonic()
    if d > 0: time.sleep(d)
" 
T=$(getconf CLK_TCK)
read ut st <<<$(awk '{print $14, $15}' /proc/$PID/stat)
echo "agent: VmHWM $(grep VmHWM /proc/$PID/status | awk '{print $2, $3}'), VmRSS $(grep VmRSS /proc/$PID/status | awk '{print $2, $3}'), CPU $(echo "scale=3; ($ut+$st)/$T" | bc) s over ~$((SECS+3)) s; $N requests at $RATE/s"
rm -rf $D
