# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/listings.sh: LIST, NLST and MLSD of a directory of 100,000
# entries, each in a fresh session: wall time and the server's peak memory.

listings_about="LIST, NLST, MLSD of 100,000 entries: time and peak memory"
listings_targets=(supervisor-epoll supervisor-uring ftpd-tcpserver vsftpd vsftpd-tcpserver pure-ftpd)

listings_run() {
	local reps rep t cmd
	reps=$(reps_or "$(q 1 3)")
	for ((rep = 1; rep <= reps; rep++)); do
		for t in $(targets_of "${listings_targets[@]}"); do
			start_target "$t" "$DATA" || continue
			log "listings: $t rep $rep"
			for cmd in LIST NLST MLSD; do
				gen listings "$t" "$rep" list --addr "$ADDR" --cmd "$cmd" --path /dir --server-pid "$SRV_PID"
			done
			stop_target
		done
	done
}
