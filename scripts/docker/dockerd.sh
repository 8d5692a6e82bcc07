#!/usr/bin/env bash
# A private Docker engine for the compose tests: its own containerd, socket, data-root and exec-root, so it never
# talks to (or shares state with) another daemon on the machine, e.g. one on /var/run/docker.sock.
#   scripts/docker/dockerd.sh start  STATE_DIR   -> prints DOCKER_HOST=unix://STATE_DIR/docker.sock (stdout)
#   scripts/docker/dockerd.sh status STATE_DIR   -> exit 0 when it answers
#   scripts/docker/dockerd.sh stop   STATE_DIR   -> SIGTERM by pid, bounded wait, SIGKILL; no shim/container left
# Usage:  export "$(scripts/docker/dockerd.sh start /tmp/aid-docker)"; docker info; ...; scripts/docker/dockerd.sh stop /tmp/aid-docker
# Settings (environment):
#   DOCKER_DATA_ROOT        images/containers/volumes; default <tools cache>/docker-data (kept: the 2nd run is warm)
#   DOCKERD_START_TIMEOUT   seconds to wait for `docker info` (default 60)
#   DOCKERD_STOP_TIMEOUT    seconds between SIGTERM and SIGKILL (default 90: dockerd first stops the containers,
#                           each with its own stop_grace_period, up to 40 s in docker-compose.yml)
# The engine: --iptables=false --ip-masq=false --ip-forward=false (no host firewall or sysctl change; containers
# get no NAT to the outside: builds that need the network use --network=host), --bridge=none (the host's docker0,
# if any, is left alone: compose makes its own networks), its own --config-file (an empty one:
# /etc/docker/daemon.json is not read). Published ports bind 0.0.0.0 unless the port spec names a host IP
# (dockerd's --ip only applies to the default bridge, which is off): use APP_PORT=127.0.0.1:18000 etc.
# Root or passwordless sudo is needed; as a non-root user the socket's group is the user's primary group.
set -euo pipefail
# shellcheck source=scripts/docker/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

usage() { echo "usage: $0 start|stop|status STATE_DIR" >&2; exit 2; }
[[ $# -eq 2 ]] || usage
cmd="$1"
mkdir -p "$2"
state="$(cd "$2" && pwd -P)"
data_root="${DOCKER_DATA_ROOT:-$TOOLS_DIR/docker-data}"
exec_root="$state/exec"
sock="$state/docker.sock"
ctr_sock="$exec_root/containerd/containerd.sock"
dockerd_pidfile="$state/dockerd.pid"
ctr_pidfile="$state/containerd.pid"
owner_file="$data_root/.ai-diary-dockerd-state"   # which state dir's dockerd uses this data-root
start_timeout="${DOCKERD_START_TIMEOUT:-60}"
stop_timeout="${DOCKERD_STOP_TIMEOUT:-90}"
export DOCKER_HOST="unix://$sock"
unset DOCKER_CONTEXT

# pid_of PIDFILE NAME: the pid in PIDFILE when that process is alive and is NAME (guards against pid reuse).
pid_of() {
  local pidfile="$1" name="$2" pid exe
  [[ -r "$pidfile" ]] || return 1
  pid="$(tr -dc 0-9 < "$pidfile")"
  [[ -n "$pid" && -d "/proc/$pid" ]] || return 1
  exe="$(cat "/proc/$pid/comm" 2>/dev/null || true)"
  [[ "$exe" == "$name" ]] || return 1
  echo "$pid"
}
answers() { timeout 10 docker info >/dev/null 2>&1; }

# wait_gone PID SECONDS: true when PID exits within SECONDS.
wait_gone() {
  local pid="$1" deadline=$((SECONDS + $2))
  while [[ -d "/proc/$pid" ]] && (( SECONDS < deadline )); do
    # a zombie (our own child) counts as gone
    [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]] && return 0
    sleep 0.5
  done
  [[ ! -d "/proc/$pid" ]] || [[ "$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null)" == Z ]]
}

# stop_pid PID NAME SECONDS: SIGTERM, bounded wait, SIGKILL.
stop_pid() {
  local pid="$1" name="$2" secs="$3"
  log "stopping $name (pid $pid): SIGTERM, waiting up to $secs s"
  "${AS_ROOT[@]}" kill -TERM "$pid" 2>/dev/null || true
  if ! wait_gone "$pid" "$secs"; then
    log "$name (pid $pid) still running after $secs s: SIGKILL"
    "${AS_ROOT[@]}" kill -KILL "$pid" 2>/dev/null || true
    wait_gone "$pid" 10 || die "$name (pid $pid) survives SIGKILL"
  fi
}

# our_shims: pids of containerd shims started by OUR containerd (their command line names our socket).
our_shims() {
  local p cmdline
  for p in /proc/[0-9]*; do
    cmdline="$( { tr '\0' ' ' < "$p/cmdline"; } 2>/dev/null || true)"
    [[ "$cmdline" == *containerd-shim* && "$cmdline" == *" -address $ctr_sock "* ]] && echo "${p#/proc/}"
  done
  return 0
}

start() {
  need_root "running dockerd"
  local pid dockerd containerd gid launch
  if pid="$(pid_of "$dockerd_pidfile" dockerd)"; then
    if answers; then
      log "already running (pid $pid)"
      echo "DOCKER_HOST=$DOCKER_HOST"
      return 0
    fi
    die "dockerd pid $pid of $state runs but does not answer on $sock: '$0 stop $state' first"
  fi
  if [[ -S "$sock" ]] && answers; then
    die "something that is not this script's dockerd answers on $sock: refusing to start a second one there"
  fi
  (( ${#exec_root} + 40 < 108 )) || die "state dir $state is too long for unix sockets: use a shorter path"
  if [[ -r "$owner_file" ]]; then
    local other; other="$(cat "$owner_file")"
    if [[ "$other" != "$state" ]] && pid="$(pid_of "$other/dockerd.pid" dockerd)"; then
      die "data-root $data_root is in use by the dockerd of $other (pid $pid): set DOCKER_DATA_ROOT to another dir"
    fi
  fi
  dockerd="$(find_bin dockerd)" || die "no dockerd: run scripts/docker/install.sh"
  containerd="$(find_bin containerd)" || die "no containerd: run scripts/docker/install.sh"
  "${AS_ROOT[@]}" mkdir -p "$data_root/containerd" "$exec_root/containerd"
  echo "$state" | "${AS_ROOT[@]}" tee "$owner_file" >/dev/null
  # every path containerd would otherwise take from /etc/containerd/config.toml or its defaults (/var/lib/containerd,
  # /run/containerd, /opt/containerd) is set here
  cat > "$state/containerd.toml" <<TOML
version = 2
root = "$data_root/containerd"
state = "$exec_root/containerd/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$ctr_sock"
[ttrpc]
  address = "$ctr_sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.internal.v1.opt"]
  path = "$data_root/containerd/opt"
TOML
  echo '{}' > "$state/daemon.json"
  rm -f "$state/containerd.log.prev" "$state/dockerd.log.prev"
  [[ -f "$state/containerd.log" ]] && mv -f "$state/containerd.log" "$state/containerd.log.prev"
  [[ -f "$state/dockerd.log" ]] && mv -f "$state/dockerd.log" "$state/dockerd.log.prev"

  local t0=$SECONDS deadline=$((SECONDS + start_timeout))
  if ! pid="$(pid_of "$ctr_pidfile" containerd)"; then
    log "starting containerd ($ctr_sock)"
    # sh records its own pid, then becomes containerd (exec): the pidfile names containerd itself
    # shellcheck disable=SC2016  # expanded by that sh
    "${AS_ROOT[@]}" setsid sh -c 'echo $$ > "$1"; shift; exec "$@"' sh "$ctr_pidfile" \
      "$containerd" --config "$state/containerd.toml" </dev/null >>"$state/containerd.log" 2>&1 &
    until [[ -S "$ctr_sock" ]]; do
      (( SECONDS < deadline )) || { tail -20 "$state/containerd.log" >&2; die "containerd did not come up"; }
      sleep 0.2
    done
  fi
  gid="$(id -g)"
  log "starting dockerd (socket $sock, data-root $data_root)"
  # dockerd refuses a --pidfile that names a live process, itself included: the launcher's pid goes elsewhere
  "${AS_ROOT[@]}" rm -f "$dockerd_pidfile"
  # shellcheck disable=SC2016  # expanded by that sh
  "${AS_ROOT[@]}" setsid sh -c 'echo $$ > "$1"; shift; exec "$@"' sh "$state/dockerd.launch.pid" \
    "$dockerd" --config-file "$state/daemon.json" \
      --host "unix://$sock" --group "$gid" \
      --containerd "$ctr_sock" \
      --data-root "$data_root" --exec-root "$exec_root" --pidfile "$dockerd_pidfile" \
      --iptables=false --ip-masq=false --ip-forward=false --bridge=none \
      </dev/null >>"$state/dockerd.log" 2>&1 &
  until answers; do
    if (( SECONDS >= deadline )); then
      tail -30 "$state/dockerd.log" >&2
      die "dockerd did not answer on $sock within $start_timeout s (log: $state/dockerd.log)"
    fi
    launch="$(tr -dc 0-9 < "$state/dockerd.launch.pid" 2>/dev/null || true)"
    if [[ -n "$launch" ]] && { [[ ! -d "/proc/$launch" ]] || [[ "$(awk '{print $3}' "/proc/$launch/stat")" == Z ]]; }; then
      tail -30 "$state/dockerd.log" >&2; die "dockerd exited (log: $state/dockerd.log)"
    fi
    sleep 0.3
  done
  log "dockerd up in $((SECONDS - t0)) s (pid $(pid_of "$dockerd_pidfile" dockerd)); use:  export DOCKER_HOST=$DOCKER_HOST"
  echo "DOCKER_HOST=$DOCKER_HOST"
}

stop() {
  local pid shims mnt
  if ! pid_of "$dockerd_pidfile" dockerd >/dev/null && ! pid_of "$ctr_pidfile" containerd >/dev/null \
     && [[ -z "$(our_shims)" ]]; then
    log "not running ($state)"
    return 0
  fi
  need_root "stopping dockerd"
  # dockerd stops its containers itself on SIGTERM (each with its stop timeout) and unmounts their layers
  if pid="$(pid_of "$dockerd_pidfile" dockerd)"; then stop_pid "$pid" dockerd "$stop_timeout"; fi
  if pid="$(pid_of "$ctr_pidfile" containerd)"; then stop_pid "$pid" containerd 20; fi
  # after a SIGKILL: shims (and the containers under them) of our containerd only
  shims="$(our_shims)"
  if [[ -n "$shims" ]]; then
    log "killing leftover shims of $ctr_sock and their containers: ${shims//$'\n'/ }"
    for pid in $shims; do
      # the container's init (the shim's child) first: killing a pid namespace's init ends the whole namespace
      # shellcheck disable=SC2013  # pids, one word each
      for c in $(cat /proc/"$pid"/task/*/children 2>/dev/null); do "${AS_ROOT[@]}" kill -KILL "$c" 2>/dev/null || true; done
      "${AS_ROOT[@]}" kill -KILL "$pid" 2>/dev/null || true
    done
  fi
  # mounts a killed daemon left under OUR roots (container rootfs, netns, the data-root's own bind mount)
  while read -r mnt; do
    [[ -n "$mnt" ]] && { "${AS_ROOT[@]}" umount -l "$mnt" 2>/dev/null || true; }
  done < <(awk -v a="$data_root" -v b="$exec_root" '$2 == a || index($2, a "/") == 1 || $2 == b || index($2, b "/") == 1 {print $2}' /proc/self/mounts | sort -r)
  "${AS_ROOT[@]}" rm -f "$dockerd_pidfile" "$state/dockerd.launch.pid" "$ctr_pidfile" "$sock"
  [[ "$(cat "$owner_file" 2>/dev/null)" == "$state" ]] && "${AS_ROOT[@]}" rm -f "$owner_file"
  log "stopped ($state)"
}

status() {
  local dpid cpid
  dpid="$(pid_of "$dockerd_pidfile" dockerd || true)"
  cpid="$(pid_of "$ctr_pidfile" containerd || true)"
  log "dockerd: ${dpid:-not running}; containerd: ${cpid:-not running}; shims: $(our_shims | wc -l)"
  if [[ -n "$dpid" ]] && answers; then
    log "answers on $sock: $(docker info --format '{{.ServerVersion}}, {{.Containers}} containers ({{.ContainersRunning}} running), {{.Images}} images, data-root {{.DockerRootDir}}')"
    echo "DOCKER_HOST=$DOCKER_HOST"
    return 0
  fi
  return 1
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) usage ;;
esac
