# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/bystander.sh: one session must not hold up the others (issue
# 18): 50 sessions each LIST a directory of 100,000 entries in a loop
# while a bystander does short sessions (login, RETR of 15 bytes, QUIT),
# one every 20 ms. Its p99 session time, against its own idle p99 on the
# same server.

bystander_about="a bystander's short sessions while 50 sessions list 100,000 entries in a loop"
bystander_targets=(supervisor-epoll supervisor-uring ftpd-tcpserver vsftpd pure-ftpd)

bystander_run() {
	local t common
	for t in $(targets_of "${bystander_targets[@]}"); do
		start_target "$t" "$DATA" || continue
		log "bystander: $t"
		common=(--addr "$ADDR" --probe session --probe-path /tiny --probe-size 15 --interval-ms 20
			--server-pid "$SRV_PID")
		gen bystander "$t" 1 underload "${common[@]}" --load none --secs "$(q 3 10)" --label phase=idle
		gen bystander "$t" 1 underload "${common[@]}" --load list -n 50 --load-path /dir \
			--ramp 3 --secs "$(q 5 15)" --label phase=listers
		stop_target
	done
}
