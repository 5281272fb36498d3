# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/sustained.sh: clients that behave like real ones for longer
# than TIME_WAIT lasts: sessions back to back for 90 s at c=32 and at
# c=256, closing normally (FIN), so that the ports of old data connections
# sit in TIME_WAIT while new passive listeners need ports. Successes and
# failures are counted second by second; a fresh server for each run.

sustained_about="90 s of sessions at c=32 and c=256, closing normally: rate and failures past TIME_WAIT"
sustained_targets=(supervisor-epoll supervisor-uring ftpd-tcpserver vsftpd pure-ftpd)

sustained_run() {
	local secs t c close
	secs=$(q 4 90)
	for t in $(targets_of "${sustained_targets[@]}"); do
		for c in 32 256; do
			for close in "${CLOSES[@]}"; do
				start_target "$t" "$DATA" || continue
				log "sustained: $t c=$c close=$close, ${secs} s"
				gen sustained "$t" 1 sessions --addr "$ADDR" --path /small --size 4096 -c "$c" \
					-n 100000000 --max-secs "$secs" --warmup "$c" --close "$close" \
					--server-pid "$SRV_PID"
				stop_target
			done
		done
	done
}
