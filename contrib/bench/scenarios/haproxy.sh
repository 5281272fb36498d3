# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/haproxy.sh: scaling out (issue 17). HAProxy (Debian's, with
# contrib/haproxy/haproxy.cfg: TCP mode, send-proxy-v2, leastconn, health
# checks) in front of two supervisors (--proxy-protocol --proxy-from
# 127.0.0.1/32, each its own port and passive range), against one
# supervisor alone, in the same run: the sessions scenario's session at
# c=1 and c=32, sessions/s both ways, and the CPU HAProxy itself used
# (its threads' schedstat) per 1,000 sessions beside the nodes'.

haproxy_about="HAProxy + PROXY v2 in front of two supervisors against one supervisor alone: sessions/s, the balancer's CPU per 1,000 sessions"
haproxy_targets=(supervisor-epoll haproxy-supervisor-epoll supervisor-uring haproxy-supervisor-uring)

haproxy_setup() {
	apt_need haproxy haproxy
}

haproxy_run() {
	local reps rep t extra
	reps=$(reps_or "$(q 2 3)")
	for ((rep = 1; rep <= reps; rep++)); do
		for t in $(targets_of "${haproxy_targets[@]}"); do
			start_target "$t" "$DATA" || continue
			log "haproxy: $t rep $rep"
			extra=()
			[[ -n $HAPROXY_PID ]] && extra=(--extra-pid "$HAPROXY_PID")
			gen haproxy "$t" "$rep" sessions --addr "$ADDR" --path /small --size 4096 -c 1 \
				-n "$(q 400 3000)" --max-secs "$(q 1 2)" --server-pid "$SRV_PID" "${extra[@]}"
			gen haproxy "$t" "$rep" sessions --addr "$ADDR" --path /small --size 4096 -c 32 \
				-n "$(q 5000 30000)" --max-secs "$(q 2 3)" --warmup 64 --server-pid "$SRV_PID" \
				"${extra[@]}"
			stop_target
		done
	done
}
