# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/sessions.sh: short runs of whole sessions (connect, login,
# TYPE I, EPSV, RETR 4 KiB, QUIT) at c=1 and c=32, every target including
# the floors: the rate and the server's CPU per session. Clients close
# normally (FIN) unless --close says otherwise; a few seconds stay well
# inside TIME_WAIT's 60 s (see the sustained scenario for that).

sessions_about="short session runs at c=1 and c=32 (rate, latency, server CPU per session)"
sessions_targets=(supervisor-epoll supervisor-uring ftpd-tcpserver vsftpd vsftpd-tcpserver pure-ftpd
	floor-fork floor-tcpserver)

sessions_run() {
	local reps rep t close
	reps=$(reps_or "$(q 1 3)")
	for ((rep = 1; rep <= reps; rep++)); do
		for t in $(targets_of "${sessions_targets[@]}"); do
			start_target "$t" "$DATA" || continue
			log "sessions: $t rep $rep"
			for close in "${CLOSES[@]}"; do
				gen sessions "$t" "$rep" sessions --addr "$ADDR" --path /small --size 4096 -c 1 \
					-n "$(q 400 3000)" --max-secs "$(q 1 2)" --close "$close" --server-pid "$SRV_PID"
				gen sessions "$t" "$rep" sessions --addr "$ADDR" --path /small --size 4096 -c 32 \
					-n "$(q 5000 30000)" --max-secs "$(q 2 3)" --warmup 64 --close "$close" \
					--server-pid "$SRV_PID"
			done
			stop_target
		done
	done
}
