# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# contrib/bench/lib/setup.sh: what a fresh machine needs before a run:
# packages, the peers, the builds, the user, the data, cgroups, limits.

# apt_need PACKAGE COMMAND_OR_FILE: installs PACKAGE when the command (or
# file) is missing, unless --no-install.
apt_need() {
	local pkg=$1 what=$2
	if [[ $what = /* ]]; then [[ -e $what ]] && return 0; else command -v "$what" >/dev/null && return 0; fi
	[[ $INSTALL = 1 ]] || die "$what is missing (Debian package $pkg) and --no-install given"
	log "installing $pkg"
	apt-get install -y -q "$pkg" >/dev/null 2>&1 ||
		{ apt-get update -q >/dev/null && apt-get install -y -q "$pkg" >/dev/null; } ||
		die "could not install $pkg"
}

install_peers() {
	command -v tcpserver >/dev/null || apt_need ucspi-tcp-ipv6 tcpserver
	apt_need curl curl
	apt_need iproute2 ss
	mkdir -p "$PEERS/debs" "$PEERS/root"
	if [[ ! -x $PEERS/root/usr/sbin/vsftpd || ! -x $PEERS/root/usr/sbin/pure-ftpd ]]; then
		[[ $INSTALL = 1 ]] || die "peers missing in $PEERS and --no-install given"
		log "downloading vsftpd and pure-ftpd (unpacked privately: they conflict as packages)"
		(cd "$PEERS/debs" && rm -f ./*.deb && apt-get download vsftpd pure-ftpd >/dev/null 2>&1) ||
			{ apt-get update -q >/dev/null && (cd "$PEERS/debs" && apt-get download vsftpd pure-ftpd >/dev/null); }
		for d in "$PEERS"/debs/*.deb; do dpkg -x "$d" "$PEERS/root"; done
	fi
	# Their shared libraries come from the system: install what ldd misses.
	local missing
	missing=$(ldd "$PEERS/root/usr/sbin/vsftpd" "$PEERS/root/usr/sbin/pure-ftpd" | awk '/not found/{print $1}' | sort -u)
	if [[ -n $missing ]]; then
		[[ $INSTALL = 1 ]] || die "libraries missing for the peers: $missing"
		local pkgs
		pkgs=$(for d in "$PEERS"/debs/*.deb; do dpkg-deb -f "$d" Depends; done | tr ',|' '\n' |
			sed 's/(.*)//; s/ //g' | grep '^lib' | sort -u | tr '\n' ' ')
		log "installing the peers' libraries: $pkgs"
		# shellcheck disable=SC2086
		apt-get install -y -q $pkgs >/dev/null
	fi
	VSFTPD=$PEERS/root/usr/sbin/vsftpd
	PUREFTPD=$PEERS/root/usr/sbin/pure-ftpd
	VSFTPD_VERSION=$(basename "$(ls "$PEERS"/debs/vsftpd_*.deb)" | cut -d_ -f2)
	PUREFTPD_VERSION=$(basename "$(ls "$PEERS"/debs/pure-ftpd_*.deb)" | cut -d_ -f2)
}

build() {
	log "building aftpd (release) and the load generator"
	(cd "$REPO" && cargo build --release -q --bins)
	(cd "$BENCH" && cargo build --release -q)
	mkdir -p "$BENCH/.build"
	cc -O2 -Wall -o "$FLOOR" "$BENCH/floor.c"
	AFTPD_BIN=$REPO/target/$TRIPLE/release
}

# The unprivileged user every server drops to. pure-ftpd serves the home
# directory of the user 'ftp', so that is the data directory when we create
# the user; otherwise pure-ftpd gets a private bind mount (lib/targets.sh).
setup_user() {
	if ! getent passwd "$FTPUSER" >/dev/null; then
		log "creating the unprivileged user $FTPUSER (home $DATA)"
		useradd --system --home-dir "$DATA" --no-create-home --shell /usr/sbin/nologin "$FTPUSER"
	fi
	FTP_UID=$(id -u "$FTPUSER")
	FTP_GID=$(id -g "$FTPUSER")
	FTP_HOME=$(getent passwd "$FTPUSER" | cut -d: -f6)
}

setup_data() {
	log "data: $DATA (big file ${BIG_MIB} MiB, 64 MiB, 4 KiB and 15-byte files, 100,000 entries)"
	mkdir -p "$DATA"
	"$GEN" mkdata "$DATA" --big-mib "$BIG_MIB" --entries 100000 >/dev/null
	chmod 755 "$(dirname "$DATA")" "$DATA"
	BIG=/big-${BIG_MIB}M
	# Into the page cache: the warm scenarios measure the network path.
	cat "$DATA$BIG" "$DATA/slow-64M" >/dev/null
}

# A memory cgroup per server (and one for the generator), under this
# script's own: the kernel memory charged to the server alone. Named
# after this run's pid: on a shared machine another run of the harness
# may sit in the same parent (the CPU-accounting hierarchy's root, often).
CGBASE=
CGPREFIX=aftpd-bench-$$
setup_cgroups() {
	local p
	p=$(awk -F: '$2 == "memory" {print $3}' /proc/self/cgroup)
	if [[ -n $p && -d /sys/fs/cgroup/memory$p ]]; then
		CGBASE=/sys/fs/cgroup/memory$p
	else
		p=$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
		[[ -n $p && -f /sys/fs/cgroup$p/memory.current ]] && CGBASE=/sys/fs/cgroup$p
		[[ -n $p && -f /sys/fs/cgroup/unified$p/memory.current ]] && CGBASE=/sys/fs/cgroup/unified$p
	fi
	# CPU: cgroup v2 counts it in the same directory (cpu.stat); v1 in the
	# cpuacct hierarchy. The server's CPU time then includes every process
	# it ran, also those that exited unwaited-for.
	CPUBASE=
	if [[ -n $CGBASE && -f $CGBASE/cpu.stat ]]; then
		CPUBASE=$CGBASE
	else
		p=$(awk -F: '$2 ~ /(^|,)cpuacct(,|$)/ {print $3}' /proc/self/cgroup)
		local d
		for d in /sys/fs/cgroup/cpuacct /sys/fs/cgroup/cpu,cpuacct /sys/fs/cgroup/cpuacct,cpu; do
			[[ -n $p && -f $d$p/cpuacct.usage ]] && { CPUBASE=${d}${p%/}; break; }
		done
	fi
	[[ -n $CPUBASE ]] || log "no CPU-accounting cgroup: server CPU from /proc (misses unwaited-for processes)"
	local c=$CGBASE/$CGPREFIX-client
	if [[ -n $CGBASE ]] && mkdir -p "$c" 2>/dev/null &&
		[[ -f $c/memory.usage_in_bytes || -f $c/memory.current ]]; then
		CGROUPS+=("$c")
		CLIENT_CG=$c
	else
		log "no memory cgroup to use: the kernel memory columns stay empty"
		CGBASE='' CLIENT_CG=''
	fi
}

tune() {
	# 10,000 sessions of a forking server that uses two processes each.
	local m
	m=$(cat /proc/sys/kernel/pid_max)
	if ((m < 131072)); then
		OLD_PID_MAX=$m
		echo 131072 >/proc/sys/kernel/pid_max
	fi
	# 2,000 slow downloads: the generator holds 4,000 descriptors, the
	# supervisor about 8,000. 20,000 is the hard limit on the machines
	# this was written on; the servers inherit it.
	ulimit -n "$(ulimit -Hn)"
	# Other users of the machine (compilers) disturb less at a higher
	# priority; every target gets the same.
	renice -n -10 $$ >/dev/null 2>&1 || true
}

machine_facts() {
	local f=$OUT/machine.txt
	{
		echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
		echo "mode: $MODE; scenarios: ${SCENARIOS[*]}; close: ${CLOSES[*]}"
		echo "cpu: $(nproc) x $(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)"
		echo "memory: $(awk '/MemTotal/{printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
		echo "kernel: $(uname -sr)"
		echo "os: $(. /etc/os-release && echo "$PRETTY_NAME")"
		echo "rustc: $(rustc --version)"
		echo "aftpd: $(cd "$REPO" && git describe --always --dirty 2>/dev/null || echo unknown)"
		echo "vsftpd: $VSFTPD_VERSION (Debian)"
		echo "pure-ftpd: $PUREFTPD_VERSION (Debian)"
		echo "tcpserver: $(dpkg-query -W -f '${Package} ${Version}' ucspi-tcp-ipv6 2>/dev/null ||
			dpkg-query -W -f '${Package} ${Version}' ucspi-tcp 2>/dev/null || echo unknown)"
		echo "curl: $(curl --version | head -1 | cut -d' ' -f1-2)"
		echo "RLIMIT_NOFILE: $(ulimit -n); tcp_mem (pages): $(cat /proc/sys/net/ipv4/tcp_mem)"
		echo "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
	} >"$f"
}
