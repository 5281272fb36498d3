# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/overhead.sh: what running a busy archive costs (issue 16).
# Each supervisor engine plain, and with metrics, a control socket and
# per-IP and total bandwidth limits far above what loopback moves (they
# never bind, but every send passes the buckets), while /metrics is
# scraped with curl and aftpd-status polled once a second: sessions/s
# and server CPU per session at c=32, and bulk RETR server CPU per GiB.
# The two take turns in short slices (1-2 s of sessions, one or two
# downloads), each started fresh, their order swapped every pair, so
# that load from elsewhere on a shared machine, which moves a rate by
# more than the few per cent looked for, hits both alike; each pair
# gives a ratio. Never both at once: two io_uring supervisors running as
# the same user share its pipe allowance (fs.pipe-user-pages-soft), and
# the second one's splice pipes come out at 8 KiB (see BENCHMARKS.md).
# Then the limits
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

# Passive ports for the pairs, below the ephemeral range: 12 pairs of
# runs at 4,000 sessions a second within a minute leave far more than
# its 28,000 ports in TIME_WAIT on the servers' side of the data
# connections, and the generator's connects then fail (EADDRNOTAVAIL);
# the sessions scenario's few seconds stay clear of that, and the
# sustained scenario is where TIME_WAIT is measured.
overhead_pasv() {
	local lo hi
	read -r lo hi </proc/sys/net/ipv4/ip_local_port_range
	((lo > 12000)) || die "overhead: the ephemeral port range starts at $lo: no room below it for passive ports"
	echo "10000-$((lo - 1))"
}

# One pair: the plain server and the -ops one (with the poller), each
# started fresh for its slice, in the given order.
overhead_pair() {
	local e=$1 i=$2 v t poller f
	shift 2
	for v in "$@"; do
		t=supervisor-$e$v
		SUP_EXTRA=(--pasv-ports "$OVERHEAD_PASV")
		start_target "$t" "$DATA" || { SUP_EXTRA=(); continue; }
		SUP_EXTRA=()
		poller=''
		if [[ -n $OPS_METRICS ]]; then
			f=$LOGS/poller-$t-$i
			overhead_poller "$OPS_METRICS" "$OPS_CONTROL" "$f" &
			poller=$!
			STARTED+=("$poller")
		fi
		gen overhead "$t" "$i" sessions --addr "$ADDR" --path /small --size 4096 -c 32 \
			-n 100000 --max-secs "$(q 1 2)" --warmup 64 --server-pid "$SRV_PID" --label phase=sessions
		gen overhead "$t" "$i" bulk --addr "$ADDR" --path "$BIG" --repeat "$(q 1 2)" \
			--reader own --server-pid "$SRV_PID" --label phase=bulk
		if [[ -n $poller ]]; then
			stop_tree "$poller"
			overhead_poller_record "$t" "$i" "$f"
		fi
		stop_target
	done
}

overhead_run() {
	local e t i pairs
	OVERHEAD_PASV=$(overhead_pasv) || die "overhead: no passive port range"
	pairs=$(reps_or "$(q 8 12)")
	for e in epoll uring; do
		[[ -n $(targets_of "supervisor-$e") ]] || continue
		log "overhead: supervisor-$e and supervisor-$e-ops, $pairs pairs"
		for ((i = 1; i <= pairs; i++)); do
			if ((i % 2)); then overhead_pair "$e" "$i" "" -ops; else overhead_pair "$e" "$i" -ops ""; fi
		done
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
