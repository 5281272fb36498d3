# shellcheck shell=bash disable=SC2034 # sourced by ./run: variables are shared
# contrib/bench/lib/common.sh: logging, cleanup, the generator wrapper.
# Sourced by ./run; expects BENCH, OUT, LOGS, GEN, MODE to be set.

log() { printf '%s run: %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "$*"; exit 111; }

STARTED=()    # pids this script started (servers, slowfs), stopped on exit
CGROUPS=()    # memory cgroups this script made
MOUNTS=()     # mount points this script mounted
OLD_PID_MAX=
cleanup() {
	set +e
	for p in "${STARTED[@]}"; do stop_tree "$p"; done
	for m in "${MOUNTS[@]}"; do mountpoint -q "$m" && umount -l "$m"; done
	for cg in "${CGROUPS[@]}"; do rmdir "$cg" 2>/dev/null; done
	[[ -n $OLD_PID_MAX ]] && echo "$OLD_PID_MAX" >/proc/sys/kernel/pid_max
}

# Stops a process and every process it started (a forking server's
# sessions, tcpserver's children), by pid only, bounded in time.
stop_tree() {
	local root=$1 pids p i
	[[ -d /proc/$root ]] || return 0
	pids=$("$GEN" tree "$root" 2>/dev/null || true)
	kill -TERM "$root" 2>/dev/null || true
	for ((i = 0; i < 50; i++)); do
		[[ -d /proc/$root ]] || break
		sleep 0.1
	done
	for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
	wait "$root" 2>/dev/null || true
}

# gen SCENARIO TARGET REP ARGS...: runs the generator (bounded in time),
# labels its record and appends it to raw.jsonl.
gen() {
	local s=$1 t=$2 rep=$3 cpu=()
	shift 3
	# The running server's CPU-accounting cgroup (lib/targets.sh).
	[[ -n ${SRV_CPUCG:-} ]] && cpu=(--cpu-cg "$SRV_CPUCG")
	timeout 900 "$GEN" "$@" "${cpu[@]}" --label "scenario=$s" --label "target=$t" --label "rep=$rep" \
		--label "mode=$MODE" >>"$OUT/raw.jsonl" ||
		log "$s/$t: '$1' failed (exit $?)"
}

# The generator in its own memory cgroup (the idle scenario subtracts the
# kernel memory of the client's sockets).
gen_in_client_cg() {
	if [[ -n ${CLIENT_CG:-} ]]; then
		(
			echo "$BASHPID" >"$CLIENT_CG/cgroup.procs"
			exec "$@"
		)
	else
		"$@"
	fi
}

# Repetitions of a scenario: --reps N overrides the scenario's own count.
reps_or() { echo "${REPS:-$1}"; }

# q QUICK FULL: the value for this mode.
q() { if [[ $QUICK = 1 ]]; then echo "$1"; else echo "$2"; fi; }
