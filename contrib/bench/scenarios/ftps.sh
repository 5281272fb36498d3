# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/ftps.sh: FTPS (issue 14) against vsftpd and pure-ftpd (both
# OpenSSL), one self-signed ECDSA P-256 certificate for all (openssl):
# bulk RETR over PROT P (our reader, rustls, decrypting; and curl
# --ssl-reqd), MB/s and server CPU per GiB; and whole FTPS sessions at
# c=32 (AUTH TLS, handshake, PBSZ 0, PROT P, login, TYPE I, EPSV, RETR
# 4 KiB over a data connection resuming the control connection's TLS
# session, QUIT), a full handshake each session, then the same with each
# client thread's control connection resuming its previous session; and
# memory per idle TLS-protected logged-in session at K=1,000 and 10,000
# (AUTH TLS, PBSZ 0, PROT P, USER, PASS, then idle), measured as the idle
# scenario measures clear-text sessions. ftpd-tcpserver-keyed-tls is ftpd
# with --tls-ticket-key: its processes resume each other's sessions.

ftps_about="FTPS: bulk RETR over PROT P (MB/s, server CPU per GiB), TLS sessions/s at c=32 (full handshakes, resumed), memory per idle TLS session, against vsftpd and pure-ftpd"
ftps_targets=(supervisor-epoll-tls supervisor-uring-tls ftpd-tcpserver-tls ftpd-tcpserver-keyed-tls vsftpd-tls pure-ftpd-tls)

ftps_setup() {
	apt_need openssl openssl
	mkdir -p "$RUN/tls"
	TLS_CERT=$RUN/tls/cert.pem
	TLS_KEY=$RUN/tls/key.pem
	# A fresh one each run; readable by root only, as a key should be:
	# every server reads it before dropping privileges.
	(umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
		-days 7 -subj /CN=localhost -keyout "$TLS_KEY" -out "$TLS_CERT" 2>>"$LOGS/openssl.log") ||
		die "openssl could not make a certificate (see $LOGS/openssl.log)"
	# ftpd-tcpserver-keyed-tls: ftpd processes share this ticket key, so
	# control connections resume across processes.
	TLS_TICKET_KEY=$RUN/tls/ticket.key
	(umask 077 && head -c 48 /dev/urandom >"$TLS_TICKET_KEY")
}

ftps_run() {
	local reps rep t
	reps=$(reps_or "$(q 1 3)")
	for ((rep = 1; rep <= reps; rep++)); do
		for t in $(targets_of "${ftps_targets[@]}"); do
			start_target "$t" "$DATA" || continue
			log "ftps: $t rep $rep"
			gen ftps "$t" "$rep" bulk --tls --addr "$ADDR" --path "$BIG" --repeat "$(q 1 2)" \
				--reader own --server-pid "$SRV_PID"
			gen ftps "$t" "$rep" bulk --tls --addr "$ADDR" --path "$BIG" --repeat 1 \
				--reader curl --server-pid "$SRV_PID"
			gen ftps "$t" "$rep" sessions --tls --addr "$ADDR" --path /small --size 4096 -c 32 \
				-n "$(q 3000 20000)" --max-secs "$(q 2 3)" --warmup 64 --server-pid "$SRV_PID"
			# The warm-up leaves each of the 32 client threads a session
			# to resume.
			gen ftps "$t" "$rep" sessions --tls --resume --addr "$ADDR" --path /small --size 4096 \
				-c 32 -n "$(q 3000 20000)" --max-secs "$(q 2 3)" --warmup 64 --server-pid "$SRV_PID" \
				--label phase=resume
			stop_target
		done
	done
	ftps_idle
}

# Memory per idle TLS session: a fresh server for each K, as in idle.sh.
ftps_idle() {
	local k t cg
	for k in "${KS[@]}"; do
		for t in $(targets_of "${ftps_targets[@]}"); do
			start_target "$t" "$DATA" || continue
			log "ftps: idle $t, K=$k"
			cg=()
			[[ -n $SRV_CG ]] && cg=(--memcg "$SRV_CG")
			[[ -n ${CLIENT_CG:-} ]] && cg+=(--client-memcg "$CLIENT_CG")
			gen_in_client_cg timeout 900 "$GEN" idle --tls --addr "$ADDR" -k "$k" -c 32 --hold 2 \
				--server-pid "$SRV_PID" "${cg[@]}" --label scenario=ftps --label "target=$t" \
				--label rep=1 --label "mode=$MODE" --label phase=idle >>"$OUT/raw.jsonl" ||
				log "ftps: idle $t K=$k failed"
			stop_target
		done
	done
}
