# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/bulk.sh: bulk RETR with the page cache warm. What it costs the
# server in CPU per GiB, as a ratio to floor.c's sendfile loop in the same
# run, with our own reader (bytes discarded in the kernel) and with curl
# (its own buffer sizes change how the server's sends are paced).

bulk_about="bulk RETR, page cache warm: server CPU per GiB against the sendfile floor (own reader, curl)"
bulk_targets=(supervisor-epoll supervisor-uring ftpd-tcpserver vsftpd pure-ftpd floor-fork)

bulk_run() {
	local reps own curl rep t
	reps=$(reps_or "$(q 1 5)")
	own=$(q 2 4)  # downloads of the big file in one session
	curl=$(q 1 2) # curl runs, one session each
	for ((rep = 1; rep <= reps; rep++)); do
		# Targets take turns within each repetition, so a burst of load
		# from elsewhere on the machine hits all of them alike.
		for t in $(targets_of "${bulk_targets[@]}"); do
			start_target "$t" "$DATA" || continue
			log "bulk: $t rep $rep"
			gen bulk "$t" "$rep" bulk --addr "$ADDR" --path "$BIG" --repeat "$own" \
				--reader own --server-pid "$SRV_PID"
			gen bulk "$t" "$rep" bulk --addr "$ADDR" --path "$BIG" --repeat "$curl" \
				--reader curl --server-pid "$SRV_PID"
			stop_target
		done
	done
}
