# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/slowclients.sh: the public-archive case (issue 13): 2,000
# downloads of a 64 MiB file at once, each client reading at about 1 MB/s
# (a token bucket in the generator). Over a window once all run: each
# client's rate (slowest against median), server CPU per GiB, and memory
# per active download: the server's processes (Pss), the kernel memory its
# cgroup is charged, and its sockets' buffers (ss, summed over the sockets
# the server holds; over loopback the machine-wide counter also holds the
# clients' receive buffers).

slowclients_about="2,000 concurrent downloads at 1 MB/s each: fairness, CPU per GiB, memory per download"
slowclients_targets=(supervisor-epoll supervisor-uring ftpd-tcpserver vsftpd pure-ftpd)

slowclients_run() {
	local t n cg=()
	n=$(q 300 2000)
	for t in $(targets_of "${slowclients_targets[@]}"); do
		start_target "$t" "$DATA" || continue
		log "slowclients: $t, $n clients"
		cg=()
		[[ -n $SRV_CG ]] && cg=(--memcg "$SRV_CG")
		gen slowclients "$t" 1 slowread --addr "$ADDR" -n "$n" --path /slow-64M --rate 1000000 \
			--settle "$(q 2 5)" --window "$(q 6 20)" --server-pid "$SRV_PID" "${cg[@]}"
		stop_target
	done
}
