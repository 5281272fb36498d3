# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/slowdisk.sh: the archive is not in memory (issue 12). The
# servers serve a tree through slowfs (slowfs.c, a FUSE passthrough):
# under /cold every read of up to 128 KiB and every lookup waits
# SLOW_DELAY_MS, and nothing there is cached by the kernel (a cold
# archive: its working set is far larger than RAM, so a client's file,
# the inode and the name all miss the caches; within one download
# readahead works as on a disk). /small is hot: it is the probe's cached
# file. A probe times NOOP and a 4 KiB RETR of /small on one session (p50,
# p99), idle, then while 8 and 32 clients download cold 64 MiB files
# (one file each, again and again: every open is cold), then while 8
# sessions loop LIST/SIZE/MDTM over cold directories of 50 files.
#
# Why not drop_caches: it is machine-wide (on a shared machine it slows
# everyone, and the servers' own binaries and the probe's file go cold
# too), and a file downloaded twice in a round would be warm the second
# time. With slowfs every open and every lookup under /cold is cold.

slowdisk_about="a slow, cold disk (FUSE, ${SLOW_DELAY_MS:-5} ms a read and a lookup): a probe's NOOP and RETR p99 under cold downloads and metadata loops"
slowdisk_targets=(supervisor-epoll-1t supervisor-epoll-2t supervisor-uring-1t supervisor-uring-2t
	ftpd-tcpserver vsftpd pure-ftpd)

SLOW_DELAY_MS=${SLOW_DELAY_MS:-5}
SLOWFS=$BENCH/.build/slowfs
SLOW_BACKING=${AFTPD_BENCH_SLOW:-/var/tmp/aftpd-bench/slow}
SLOW_MNT=${AFTPD_BENCH_SLOW_MNT:-/var/tmp/aftpd-bench/slowmnt}

slowdisk_setup() {
	[[ -e /dev/fuse ]] || die "slowdisk: no /dev/fuse (modprobe fuse)"
	apt_need libfuse3-dev /usr/include/fuse3/fuse_lowlevel.h
	apt_need fuse3 fusermount3
	apt_need pkg-config pkg-config
	# shellcheck disable=SC2046 # pkg-config's words are separate flags
	cc -O2 -Wall -o "$SLOWFS" "$BENCH/slowfs.c" $(pkg-config --cflags --libs fuse3)
	log "slowdisk: tree in $SLOW_BACKING (32 files of 64 MiB, 8 directories of 50 files)"
	"$GEN" mkslow "$SLOW_BACKING" --files 32 --file-mib 64 --dirs 8 --entries 50 >/dev/null
	chmod 755 "$(dirname "$SLOW_BACKING")"
	# The backing files in the page cache: the only wait is the one slowfs
	# injects, the same for every target.
	cat "$SLOW_BACKING"/cold/f* >/dev/null
	mkdir -p "$SLOW_MNT"
	mountpoint -q "$SLOW_MNT" && umount -l "$SLOW_MNT"
	"$SLOWFS" --read-delay-us $((SLOW_DELAY_MS * 1000)) --lookup-delay-us $((SLOW_DELAY_MS * 1000)) \
		"$SLOW_BACKING" "$SLOW_MNT" >>"$LOGS/slowfs.log" 2>&1 </dev/null &
	SLOWFS_PID=$!
	STARTED+=("$SLOWFS_PID")
	MOUNTS+=("$SLOW_MNT")
	local i
	for ((i = 0; i < 50; i++)); do
		mountpoint -q "$SLOW_MNT" && break
		sleep 0.1
	done
	mountpoint -q "$SLOW_MNT" || die "slowdisk: slowfs did not mount; see $LOGS/slowfs.log"
}

slowdisk_teardown() {
	stop_tree "$SLOWFS_PID"
	mountpoint -q "$SLOW_MNT" && umount -l "$SLOW_MNT"
	return 0
}

slowdisk_run() {
	local t probe secs ramp
	secs=$(q 3 10)
	ramp=$(q 1 3)
	for t in $(targets_of "${slowdisk_targets[@]}"); do
		start_target "$t" "$SLOW_MNT" || continue
		log "slowdisk: $t"
		probe=(--addr "$ADDR" --probe ctl --probe-path /small --probe-size 4096 --interval-ms 20
			--server-pid "$SRV_PID" --label "delay_ms=$SLOW_DELAY_MS")
		gen slowdisk "$t" 1 underload "${probe[@]}" --load none --secs "$(q 2 6)" --label phase=idle
		gen slowdisk "$t" 1 underload "${probe[@]}" --load retr -n 8 --load-path '/cold/f{i}' \
			--load-size 67108864 --ramp "$ramp" --secs "$secs" --label phase=cold8
		gen slowdisk "$t" 1 underload "${probe[@]}" --load retr -n 32 --load-path '/cold/f{i}' \
			--load-size 67108864 --ramp "$ramp" --secs "$secs" --label phase=cold32
		gen slowdisk "$t" 1 underload "${probe[@]}" --load meta -n 8 --load-path '/cold/d{i}' \
			--meta-files 50 --ramp "$ramp" --secs "$secs" --label phase=meta8
		stop_target
	done
}
