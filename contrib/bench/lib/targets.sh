# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# contrib/bench/lib/targets.sh: the servers under test. start_target NAME
# ROOT starts one on a fresh loopback address and port serving ROOT and
# waits for its greeting; ADDR, SRV_PID and SRV_CG then describe it;
# stop_target stops it and everything it started.
#
# Names: supervisor-epoll, supervisor-uring (optionally -Nt: --threads N),
# ftpd-tcpserver, vsftpd, vsftpd-tcpserver, pure-ftpd, floor-fork,
# floor-tcpserver. To add a target (a TLS peer, a set-up behind a proxy),
# add a case to start_target (one launch of one process tree, serving
# ROOT, listening on $PORT) and name it in the scenarios that should run
# it; a set-up of several processes (HAProxy in front of two supervisors)
# starts them under one parent, e.g. a small shell that execs the last,
# so that stop_tree stops them all.

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
PEERS_NAMES=(vsftpd vsftpd-tcpserver pure-ftpd)

write_configs() {
	mkdir -p "$RUN/empty" "$LOGS"
	chmod 755 "$RUN/empty"
}

# vsftpd's configuration for ROOT: anonymous only, Debian's defaults
# otherwise. $1: listen (standalone) or inetd.
vsftpd_conf() {
	local how=$1 root=$2 f=$RUN/vsftpd-$1.conf up=NO
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
		cg=$CGBASE/aftpd-bench-$name
		rmdir "$cg" 2>/dev/null || true
		mkdir -p "$cg"
		CGROUPS+=("$cg")
	fi
	if [[ -n $CPUBASE && $CPUBASE = "$CGBASE" ]]; then
		cpucg=$cg
	elif [[ -n $CPUBASE ]]; then
		cpucg=$CPUBASE/aftpd-bench-$name
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

start_target() {
	local t=$1 root=$2 s=$AFTPD_BIN/aftpd-supervisor threads=()
	PORT=$((PORT + 1))
	STARTS=$((STARTS + 1))
	IP=127.0.$((STARTS / 250 % 250)).$((STARTS % 250 + 2))
	ADDR=$IP:$PORT
	if [[ $t =~ ^(supervisor-(epoll|uring))-([0-9]+)t$ ]]; then
		threads=(--threads "${BASH_REMATCH[3]}")
	fi
	local sup=(--listen "$ADDR" --user "$FTPUSER" --max-sessions 20000 --max-per-ip 0
		--timeout 600 --shutdown-timeout 1 "${threads[@]}" "${UPLOAD_ARGS[@]}" "$root")
	local tcps=(tcpserver -RHl0 -c 20000 -b 1024)
	as_ftp_home "$root"
	case $t in
	supervisor-epoll*) launch "$t" "$s" --engine epoll "${sup[@]}" ;;
	supervisor-uring*) launch "$t" "$s" --engine uring "${sup[@]}" ;;
	ftpd-tcpserver)
		# publicfile's set-up: envuidgid's $UID/$GID, ftpd chroots and drops.
		launch "$t" env UID="$FTP_UID" GID="$FTP_GID" "${tcps[@]}" "$IP" "$PORT" \
			"$AFTPD_BIN/ftpd" --timeout 600 "${UPLOAD_ARGS[@]}" "$root" ;;
	vsftpd) launch "$t" "${HOME_WRAP[@]}" "$VSFTPD" "$(vsftpd_conf listen "$root")" ;;
	vsftpd-tcpserver)
		launch "$t" "${HOME_WRAP[@]}" "${tcps[@]}" "$IP" "$PORT" "$VSFTPD" \
			"$(vsftpd_conf inetd "$root")" ;;
	pure-ftpd)
		launch "$t" "${HOME_WRAP[@]}" "$PUREFTPD" -S "$IP,$PORT" -e -H -A -c 20000 \
			-C 20000 -I 10 -L 200000:5 -f none -g "$RUN/pure-ftpd.pid" ;;
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
}

stop_target() {
	stop_tree "$SRV_PID"
	local cg
	for cg in "$SRV_CG" "$SRV_CPUCG"; do
		if [[ -n $cg ]]; then rmdir "$cg" 2>/dev/null || true; fi
	done
	SRV_CPUCG=
}

# The targets a scenario runs: its own list, less those --targets leaves
# out (a name given there also selects its -Nt variants).
targets_of() {
	local t base
	for t in "$@"; do
		if [[ -z $TARGETS ]]; then
			echo "$t"
			continue
		fi
		base=${t%-[0-9]*t}
		[[ ,$TARGETS, = *,$t,* || ,$TARGETS, = *,$base,* ]] && echo "$t"
	done
	return 0
}
