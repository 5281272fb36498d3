# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# scenarios/uploads.sh: uploads into a drop box (issue 15), to the disk
# the data set is on: one upload of 1 GiB, and 32 at once of 16 MiB each.
# Durability is counted: aftpd fsyncs a file and its directory before its
# 226; vsftpd (anon_upload_enable) does not, so the generator fsyncs for
# it before the upload counts as done (the time is comparable; that CPU
# is then the generator's, not vsftpd's).

uploads_about="uploads (STOR): MB/s and server CPU per GiB, 1 x 1 GiB and 32 x 16 MiB, fsync counted"
uploads_targets=(supervisor-epoll supervisor-uring ftpd-tcpserver vsftpd)

# The served tree: ROOT (not writable by the server's user, as vsftpd
# insists) holding the drop box, which is.
UPROOT=

uploads_setup() {
	UPROOT=$(dirname "$DATA")/uploads
	mkdir -p "$UPROOT/incoming"
	chown root:root "$UPROOT"
	chmod 755 "$UPROOT"
	chown "$FTP_UID:$FTP_GID" "$UPROOT/incoming"
	chmod 733 "$UPROOT/incoming"
	rm -f "$UPROOT/incoming/"*
}

uploads_teardown() {
	[[ -n $UPROOT ]] && rm -rf "$UPROOT"
}

uploads_run() {
	local reps rep t big big_n many many_n sync
	reps=$(reps_or "$(q 1 3)")
	big=$(q $((256 << 20)) $((1 << 30)))
	big_n=$(q 256M 1G)
	many=$((16 << 20))
	many_n=$(q 8 32)
	# What the servers need to take uploads (lib/targets.sh reads these).
	UPLOAD_ARGS=(--incoming incoming --min-free 0 --max-upload 2G)
	VSFTPD_UPLOADS=1
	for ((rep = 1; rep <= reps; rep++)); do
		for t in $(targets_of "${uploads_targets[@]}"); do
			start_target "$t" "$UPROOT" || continue
			sync=()
			[[ $t = vsftpd* ]] && sync=(--sync-dir "$UPROOT/incoming")
			log "uploads: $t rep $rep"
			rm -f "$UPROOT/incoming/"*
			gen uploads "$t" "$rep" upload --addr "$ADDR" --path /incoming --size "$big" \
				--clients 1 --tag big "${sync[@]}" --server-pid "$SRV_PID" --label "case=1x$big_n"
			rm -f "$UPROOT/incoming/"*
			gen uploads "$t" "$rep" upload --addr "$ADDR" --path /incoming --size "$many" \
				--clients "$many_n" --tag many "${sync[@]}" --server-pid "$SRV_PID" \
				--label "case=${many_n}x16M"
			rm -f "$UPROOT/incoming/"*
			stop_target
		done
	done
	UPLOAD_ARGS=()
	VSFTPD_UPLOADS=
}
