# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/overhead.sh: what running a busy archive costs (issue 16).
# Each supervisor engine plain, and with metrics, a control socket and
# per-IP and total bandwidth limits far above what loopback moves (they
# never bind, but every send passes the buckets), while /metrics is
# scraped with curl and aftpd-status polled once a second: sessions/s
# and server CPU per session at c=32, and bulk RETR server CPU per GiB.
# The two run side by side and take turns in short slices (1-2 s of
# sessions, one or two downloads), their order swapped every pair, so
# that load from elsewhere on a shared machine, which moves a rate by
# more than the few per cent looked for, hits both alike; each pair
# gives a ratio. Then the limits
# themselves: a download of 256 MiB at --max-rate 20M (elapsed against
# nominal), and 10 downloads at once under --max-rate-total 50M for 20 s
# (Jain's index, total against the limit).

overhead_about="metrics, status and (non-binding) limits on against off: sessions/s, CPU per session and per GiB; rate accuracy and fairness of the limits"
overhead_targets=(supervisor-epoll supervisor-epoll-ops supervisor-uring supervisor-uring-ops)

# The scraper and poller, once a second, for at most 15 minutes; one
# letter a line per try (m/M: a scrape that worked/failed, s/S: the
# same for aftpd-status), read by overhead_poller_record.
overhead_poller() {
	local metrics=$1 control=$2 out=$3 i
	for ((i = 0; i < 900; i++)); do
		if curl -sf --max-time 2 -o "$out.metrics" "http://$metrics/metrics"; then echo m; else echo M; fi
		if timeout 2 "$AFTPD_BIN/aftpd-status" --control "$control" >"$out.status" 2>&1; then
			echo s
		else
			echo S
		fi
		sleep 1
	done >"$out"
}

# A record of what the poller did, beside the generator's.
overhead_poller_record() {
	local t=$1 rep=$2 f=$3 c
	c() { grep -c "^$1\$" "$f" || true; }
	printf '{"kind":"poller","scenario":"overhead","target":"%s","rep":%s,"mode":"%s","scrapes_ok":%s,"scrapes_failed":%s,"status_ok":%s,"status_failed":%s}\n' \
		"$t" "$rep" "$MODE" "$(c m)" "$(c M)" "$(c s)" "$(c S)" >>"$OUT/raw.jsonl"
}

# The two servers of one engine at once: the plain one and the -ops one
# (with the poller), taking turns. P_* and O_* hold what start_target
# said of each; use_target makes one of them the current target for gen
# and stop_target.
use_target() {
	local v=$1
	local -n a=${v}_ADDR pid=${v}_PID cg=${v}_CG cpucg=${v}_CPUCG ctl=${v}_CONTROL
	ADDR=$a SRV_PID=$pid SRV_CG=$cg SRV_CPUCG=$cpucg OPS_CONTROL=$ctl
}

overhead_engine() {
	local e=$1 pairs i v t poller='' f=$LOGS/poller-$1 order
	local P_ADDR P_PID P_CG P_CPUCG P_CONTROL O_ADDR O_PID O_CG O_CPUCG O_CONTROL
	start_target "supervisor-$e" "$DATA" || return 0
	P_ADDR=$ADDR P_PID=$SRV_PID P_CG=$SRV_CG P_CPUCG=$SRV_CPUCG P_CONTROL=''
	if ! start_target "supervisor-$e-ops" "$DATA"; then
		use_target P
		stop_target
		return 0
	fi
	O_ADDR=$ADDR O_PID=$SRV_PID O_CG=$SRV_CG O_CPUCG=$SRV_CPUCG O_CONTROL=$OPS_CONTROL
	overhead_poller "$OPS_METRICS" "$OPS_CONTROL" "$f" &
	poller=$!
	STARTED+=("$poller")
	pairs=$(reps_or "$(q 8 12)")
	log "overhead: supervisor-$e and supervisor-$e-ops, $pairs pairs of session runs"
	for ((i = 1; i <= pairs; i++)); do
		order=(P O)
		((i % 2 == 0)) && order=(O P)
		for v in "${order[@]}"; do
			use_target "$v"
			t=supervisor-$e
			[[ $v = O ]] && t=supervisor-$e-ops
			gen overhead "$t" "$i" sessions --addr "$ADDR" --path /small --size 4096 -c 32 \
				-n 100000 --max-secs "$(q 1 2)" --warmup 64 --server-pid "$SRV_PID" \
				--label phase=sessions
		done
	done
	pairs=$(reps_or "$(q 4 8)")
	log "overhead: supervisor-$e and supervisor-$e-ops, $pairs pairs of downloads"
	for ((i = 1; i <= pairs; i++)); do
		order=(P O)
		((i % 2 == 0)) && order=(O P)
		for v in "${order[@]}"; do
			use_target "$v"
			t=supervisor-$e
			[[ $v = O ]] && t=supervisor-$e-ops
			gen overhead "$t" "$i" bulk --addr "$ADDR" --path "$BIG" --repeat "$(q 1 2)" \
				--reader own --server-pid "$SRV_PID" --label phase=bulk
		done
	done
	stop_tree "$poller"
	overhead_poller_record "supervisor-$e-ops" 1 "$f"
	use_target O
	stop_target
	use_target P
	stop_target
}

overhead_run() {
	local e t
	for e in epoll uring; do
		[[ -n $(targets_of "supervisor-$e") ]] || continue
		overhead_engine "$e"
	done
	# The limits themselves, once per engine (quick and full alike: the
	# download takes its nominal 12.8 s whatever the mode).
	for e in epoll uring; do
		t=supervisor-$e
		[[ -n $(targets_of "$t") ]] || continue
		SUP_EXTRA=(--max-rate 20M)
		if start_target "$t" "$DATA"; then
			log "overhead: $t --max-rate 20M, 256 MiB"
			gen overhead "$t" 1 rate --addr "$ADDR" --path "$BIG" --bytes $((256 << 20)) \
				--rate $((20 << 20)) --server-pid "$SRV_PID" --label phase=rate
			stop_target
		fi
		SUP_EXTRA=(--max-rate-total 50M)
		if start_target "$t" "$DATA"; then
			log "overhead: $t --max-rate-total 50M, 10 downloads"
			gen overhead "$t" 1 fair --addr "$ADDR" --path "$BIG" -n 10 --secs 20 --settle 2 \
				--limit $((50 << 20)) --server-pid "$SRV_PID" --label phase=fair
			stop_target
		fi
		SUP_EXTRA=()
	done
}
