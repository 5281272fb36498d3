# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/idle.sh: memory per idle logged-in session at K=1,000 and
# 10,000: K sessions log in and sit, then the server's memory (user: Pss;
# kernel: its cgroup's kernel memory plus a tcp_sock per session) is
# compared with the server at rest, a fresh server each time.

idle_about="memory per idle logged-in session at K=1,000 and 10,000"
idle_targets=(supervisor-epoll supervisor-uring ftpd-tcpserver vsftpd vsftpd-tcpserver pure-ftpd
	floor-fork floor-tcpserver)

idle_run() {
	local k t rep reps cg
	for k in "${KS[@]}"; do
		reps=$(reps_or 1)
		for ((rep = 1; rep <= reps; rep++)); do
			for t in $(targets_of "${idle_targets[@]}"); do
				start_target "$t" "$DATA" || continue
				log "idle: $t, K=$k, rep $rep"
				cg=()
				[[ -n $SRV_CG ]] && cg=(--memcg "$SRV_CG")
				[[ -n ${CLIENT_CG:-} ]] && cg+=(--client-memcg "$CLIENT_CG")
				gen_in_client_cg timeout 900 "$GEN" idle --addr "$ADDR" -k "$k" -c 32 --hold 2 \
					--server-pid "$SRV_PID" "${cg[@]}" --label scenario=idle --label "target=$t" \
					--label "rep=$rep" --label "mode=$MODE" >>"$OUT/raw.jsonl" ||
					log "idle: $t K=$k failed"
				stop_target
			done
		done
	done
}
