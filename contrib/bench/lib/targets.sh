# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# contrib/bench/lib/targets.sh: the servers under test. start_target NAME
# ROOT starts one on a fresh loopback address and port serving ROOT and
# waits for its greeting; ADDR, SRV_PID and SRV_CG then describe it;
# stop_target stops it and everything it started.
#
# Names: supervisor-epoll, supervisor-uring (optionally -Nt: --threads N),
# ftpd-tcpserver, vsftpd, vsftpd-tcpserver, pure-ftpd, floor-fork,
# floor-tcpserver; and variants:
#   supervisor-{epoll,uring}-ops: with metrics, a control socket and
#     bandwidth limits that never bind (OPS_METRICS, OPS_CONTROL say
#     where; the overhead scenario polls them);
#   {supervisor-epoll,supervisor-uring,ftpd-tcpserver,vsftpd,pure-ftpd}-tls:
#     FTPS offered with the certificate TLS_CERT, TLS_KEY (the ftps
#     scenario makes them);
#   haproxy-supervisor-{epoll,uring}: HAProxy (contrib/haproxy's
#     configuration) in front of two such supervisors with the PROXY
#     protocol (lib/balanced starts the three; HAPROXY_PID is HAProxy's).
# SUP_EXTRA (an array) adds options to a supervisor's command line
# (bandwidth limits in the overhead scenario).
#
# To add a target, add a case to start_target (one launch of one process
# tree, serving ROOT, listening on $PORT) and name it in the scenarios
# that should run it; a set-up of several processes starts them under
# one parent that stops them all when one of them ends (lib/balanced),
# so that stop_tree stops them all and none outlives a failed start.

PORT=21300 # each start takes the next port: no TIME_WAIT clashes
# Set by a scenario that uploads (scenarios/uploads.sh): aftpd's upload
# options, and a non-empty VSFTPD_UPLOADS for vsftpd's.
UPLOAD_ARGS=()
VSFTPD_UPLOADS=
# ... and the next address of 127.0.0.0/8 (all of it is loopback): the
# ports an earlier run left in TIME_WAIT on its address do not stand in
# the way of this server's passive listeners, so every run starts clean,
# whatever ran before it. Clients connect from 127.0.0.1.
STARTS=0
SUP_EXTRA=()
OPS_METRICS=''
OPS_CONTROL=''
HAPROXY_PID=''
PEERS_NAMES=(vsftpd vsftpd-tcpserver pure-ftpd)

write_configs() {
	mkdir -p "$RUN/empty" "$LOGS"
	chmod 755 "$RUN/empty"
}

# vsftpd's configuration for ROOT: anonymous only, Debian's defaults
# otherwise. $1: listen (standalone) or inetd; $3: tls for FTPS.
vsftpd_conf() {
	local how=$1 root=$2 tls=${3:-} f=$RUN/vsftpd-$1${3:+-$3}.conf up=NO
	[[ -n ${VSFTPD_UPLOADS:-} ]] && up=YES
	{
		if [[ $how = listen ]]; then
			printf 'listen=YES\nlisten_ipv6=NO\nlisten_address=%s\nlisten_port=%s\nbackground=NO\n' "$IP" "$PORT"
		else
			printf 'listen=NO\nlisten_ipv6=NO\n'
		fi
		cat <<-EOF
			anonymous_enable=YES
			local_enable=NO
			write_enable=$up
			anon_upload_enable=$up
			anon_umask=077
			anon_root=$root
			no_anon_password=YES
			ftp_username=$FTPUSER
			secure_chroot_dir=$RUN/empty
			seccomp_sandbox=NO
			max_clients=0
			max_per_ip=0
			idle_session_timeout=600
			data_connection_timeout=60
			xferlog_enable=YES
			xferlog_file=$LOGS/vsftpd-xfer.log
			vsftpd_log_file=$LOGS/vsftpd.log
			tcp_wrappers=NO
			dirmessage_enable=NO
		EOF
		# FTPS: offered to anonymous users, data protected, and the data
		# connection must resume the control connection's TLS session,
		# as aftpd insists. Debian's defaults for the rest (protocols,
		# ciphers).
		if [[ $tls = tls ]]; then
			cat <<-EOF
				ssl_enable=YES
				allow_anon_ssl=YES
				force_anon_data_ssl=YES
				require_ssl_reuse=YES
				rsa_cert_file=$TLS_CERT
				rsa_private_key_file=$TLS_KEY
			EOF
		fi
	} >"$f"
	echo "$f"
}

# The peers need the home directory of 'ftp' to be ROOT (pure-ftpd serves
# ~ftp to anonymous users) or at least to exist (vsftpd changes into it
# before anon_root). Unless it already is ROOT, they run in a private mount
# namespace where ROOT is bound there (over a tmpfs on its parent if ~ftp
# does not exist): HOME_WRAP is what to put before the command.
as_ftp_home() {
	local root=$1
	HOME_WRAP=()
	[[ $(realpath -m "$FTP_HOME") = $(realpath -m "$root") ]] && return 0
	HOME_WRAP=(unshare --mount --propagation private "$BENCH/lib/ftp-home" "$root" "$FTP_HOME")
}

# Starts a command in its own memory cgroup; SRV_PID is its pid (the
# subshell execs the server, so the pid is the server's).
launch() {
	local name=$1 cg='' cpucg=''
	shift
	if [[ -n $CGBASE ]]; then
		cg=$CGBASE/$CGPREFIX-$name
		rmdir "$cg" 2>/dev/null || true
		mkdir -p "$cg"
		CGROUPS+=("$cg")
	fi
	if [[ -n $CPUBASE && $CPUBASE = "$CGBASE" ]]; then
		cpucg=$cg
	elif [[ -n $CPUBASE ]]; then
		cpucg=$CPUBASE/$CGPREFIX-$name
		rmdir "$cpucg" 2>/dev/null || true
		mkdir -p "$cpucg"
		CGROUPS+=("$cpucg")
	fi
	(
		[[ -n $cg ]] && echo "$BASHPID" >"$cg/cgroup.procs"
		[[ -n $cpucg && $cpucg != "$cg" ]] && echo "$BASHPID" >"$cpucg/cgroup.procs"
		exec "$@"
	) >>"$LOGS/$name.log" 2>&1 </dev/null &
	SRV_PID=$!
	SRV_CG=$cg
	SRV_CPUCG=$cpucg
	STARTED+=("$SRV_PID")
}

# HAProxy's configuration for a balancer on ADDR in front of the nodes
# NODE...: contrib/haproxy/haproxy.cfg as shipped from its defaults on
# (TCP mode, send-proxy-v2, health checks, leastconn, its per-connection
# log line), with a global section for a foreground process whose log
# goes to standard error (the target's log file) instead of syslog, and
# a maxconn that the open-files limit holds (HAProxy needs two
# descriptors a connection; the shipped 20,000 would need 40,019).
haproxy_conf() {
	local addr=$1 f=$RUN/haproxy-$STARTS.cfg i=0 n servers=''
	HAPROXY_CFG=$f
	shift
	for n in "$@"; do
		i=$((i + 1))
		servers+="    server node$i $n"$'\n'
	done
	{
		printf 'global\n    log stderr format raw local0 info\n    maxconn %s\n\n' $(($(ulimit -n) / 2 - 100))
		sed -n '/^defaults/,$p' "$REPO/contrib/haproxy/haproxy.cfg" |
			sed "s|^    bind :21\$|    bind $addr|; /^    server node[0-9]/d"
		printf '%s' "$servers"
	} >"$f"
	grep -q "^    bind $addr\$" "$f" || die "contrib/haproxy/haproxy.cfg: no 'bind :21' line to adapt"
	# The servers go at the end: the shipped file must end with its backend.
	[[ $(awk '/^[a-z]/ {s = $1} END {print s}' "$f") = backend ]] ||
		die "contrib/haproxy/haproxy.cfg: its last section is not the backend"
	haproxy -c -q -f "$f" >>"$LOGS/haproxy-check.log" 2>&1 || die "haproxy rejects $f (see $LOGS/haproxy-check.log)"
}

start_target() {
	local t=$1 root=$2 s=$AFTPD_BIN/aftpd-supervisor threads=() extra=()
	PORT=$((PORT + 1))
	STARTS=$((STARTS + 1))
	IP=127.0.$((STARTS / 250 % 250)).$((STARTS % 250 + 2))
	ADDR=$IP:$PORT
	if [[ $t =~ ^(supervisor-(epoll|uring))-([0-9]+)t$ ]]; then
		threads=(--threads "${BASH_REMATCH[3]}")
	fi
	OPS_METRICS='' OPS_CONTROL=''
	case $t in
	supervisor-*-ops)
		# Limits far above what loopback moves: they never bind, but every
		# send passes the per-IP and total buckets.
		OPS_METRICS=$IP:$((PORT + 10000))
		OPS_CONTROL=$RUN/control-$STARTS
		extra=(--metrics "$OPS_METRICS" --control "$OPS_CONTROL" --max-rate-total 100G
			--max-rate-per-ip 100G) ;;
	*-keyed-tls) extra=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY" --tls-ticket-key "$TLS_TICKET_KEY") ;;
	*-tls) extra=(--tls-cert "$TLS_CERT" --tls-key "$TLS_KEY") ;;
	esac
	local sup=(--user "$FTPUSER" --max-sessions 20000 --max-per-ip 0
		--timeout 600 --shutdown-timeout 1 "${threads[@]}" "${extra[@]}" "${SUP_EXTRA[@]}"
		"${UPLOAD_ARGS[@]}" "$root")
	local tcps=(tcpserver -RHl0 -c 20000 -b 1024)
	as_ftp_home "$root"
	case $t in
	supervisor-epoll*) launch "$t" "$s" --engine epoll --listen "$ADDR" "${sup[@]}" ;;
	supervisor-uring*) launch "$t" "$s" --engine uring --listen "$ADDR" "${sup[@]}" ;;
	haproxy-supervisor-epoll | haproxy-supervisor-uring)
		# Two nodes on this address, each with its own port and passive
		# range, trusting the balancer's PROXY header; HAProxy connects to
		# them from 127.0.0.1 (the source the kernel picks for 127/8).
		# The client's data connections go straight to the node, to the
		# address it used for the control connection, as a published
		# passive range would (README, "Scaling out").
		local n1=$IP:$((PORT + 5000)) n2=$IP:$((PORT + 6000))
		haproxy_conf "$ADDR" "$n1" "$n2"
		rm -f "$HAPROXY_CFG.pid"
		launch "$t" "$BENCH/lib/balanced" "$HAPROXY_CFG" \
			"$n1,10000-14999" "$n2,15000-19999" -- \
			"$s" --engine "${t##*-}" --proxy-protocol --proxy-from 127.0.0.1/32 "${sup[@]}" ;;
	ftpd-tcpserver | ftpd-tcpserver-tls | ftpd-tcpserver-keyed-tls)
		# publicfile's set-up: envuidgid's $UID/$GID, ftpd chroots and drops.
		launch "$t" env UID="$FTP_UID" GID="$FTP_GID" "${tcps[@]}" "$IP" "$PORT" \
			"$AFTPD_BIN/ftpd" --timeout 600 "${extra[@]}" "${UPLOAD_ARGS[@]}" "$root" ;;
	vsftpd) launch "$t" "${HOME_WRAP[@]}" "$VSFTPD" "$(vsftpd_conf listen "$root")" ;;
	vsftpd-tls) launch "$t" "${HOME_WRAP[@]}" "$VSFTPD" "$(vsftpd_conf listen "$root" tls)" ;;
	vsftpd-tcpserver)
		launch "$t" "${HOME_WRAP[@]}" "${tcps[@]}" "$IP" "$PORT" "$VSFTPD" \
			"$(vsftpd_conf inetd "$root")" ;;
	pure-ftpd)
		launch "$t" "${HOME_WRAP[@]}" "$PUREFTPD" -S "$IP,$PORT" -e -H -A -c 20000 \
			-C 20000 -I 10 -L 200000:5 -f none -g "$RUN/pure-ftpd.pid" ;;
	pure-ftpd-tls)
		# -Y 1: TLS offered, clear text still served (as aftpd's optional).
		launch "$t" "${HOME_WRAP[@]}" "$PUREFTPD" -S "$IP,$PORT" -e -H -A -c 20000 \
			-C 20000 -I 10 -L 200000:5 -f none -g "$RUN/pure-ftpd.pid" \
			-Y 1 -2 "$TLS_CERT,$TLS_KEY" ;;
	floor-fork)
		launch "$t" setpriv --reuid="$FTP_UID" --regid="$FTP_GID" --clear-groups \
			"$FLOOR" -p "$PORT" -l "$IP" "$root" ;;
	floor-tcpserver)
		launch "$t" "${tcps[@]}" -u "$FTP_UID" -g "$FTP_GID" "$IP" "$PORT" "$FLOOR" "$root" ;;
	*) die "unknown target $t" ;;
	esac
	if ! timeout 20 "$GEN" ping --addr "$ADDR" --secs 10 >/dev/null; then
		log "$t did not start; see $LOGS/$t.log"
		stop_target
		return 1
	fi
	HAPROXY_PID=''
	if [[ $t = haproxy-* ]]; then
		HAPROXY_PID=$(cat "$HAPROXY_CFG.pid" 2>/dev/null || true)
		[[ -n $HAPROXY_PID ]] || { log "$t: no HAProxy pid"; stop_target; return 1; }
	fi
}

stop_target() {
	stop_tree "$SRV_PID"
	# The supervisor cannot remove its control socket from inside the
	# chroot.
	if [[ -n $OPS_CONTROL ]]; then rm -f "$OPS_CONTROL"; fi
	local cg
	for cg in "$SRV_CG" "$SRV_CPUCG"; do
		if [[ -n $cg ]]; then rmdir "$cg" 2>/dev/null || true; fi
	done
	SRV_CPUCG=
}

# The targets a scenario runs: its own list, less those --targets leaves
# out (a name given there also selects its variants: -Nt, -ops, -tls,
# haproxy-NAME).
targets_of() {
	local t base
	for t in "$@"; do
		if [[ -z $TARGETS ]]; then
			echo "$t"
			continue
		fi
		base=${t%-[0-9]*t}
		base=${base%-ops}
		base=${base%-tls}
		base=${base#haproxy-}
		[[ ,$TARGETS, = *,$t,* || ,$TARGETS, = *,$base,* ]] && echo "$t"
	done
	return 0
}
