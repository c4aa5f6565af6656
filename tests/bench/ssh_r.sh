# shellcheck shell=bash
# Sourced by bench.sh and split.sh: `ssh -R` set up as the shared harness (../shared/bench/run.sh)
# runs it, so our rows beside it measure the same thing: sshd with an ed25519 host key, one user
# key, remote forwarding only, aes128-gcm.
#
#   ssh_r_setup DIR SSHD_PORT       keys and sshd_config in DIR (0700, emptied first)
#   ssh_r_client DIR SSHD_PORT REMOTE_PORT UPSTREAM_PORT
#                                   SSH_R_CLIENT=(ssh -N -R 127.0.0.1:REMOTE_PORT:127.0.0.1:UPSTREAM_PORT ...)
ssh_r_setup() {
  local d=$1 port=$2
  mkdir -p /run/sshd "$d"; chmod 700 "$d"; rm -f "$d"/*
  ssh-keygen -q -t ed25519 -N '' -f "$d/host_key"; ssh-keygen -q -t ed25519 -N '' -f "$d/user_key"
  cp "$d/user_key.pub" "$d/authorized_keys"
  printf '%s\n' "ListenAddress 127.0.0.1:$port" "HostKey $d/host_key" "PidFile none" \
    "AuthorizedKeysFile $d/authorized_keys" "StrictModes no" "UsePAM no" "PasswordAuthentication no" \
    "KbdInteractiveAuthentication no" "PermitRootLogin prohibit-password" "AllowTcpForwarding remote" \
    "GatewayPorts no" "Ciphers aes128-gcm@openssh.com" >"$d/sshd_config"
}
ssh_r_client() {
  # shellcheck disable=SC2034 # used by the sourcing script
  SSH_R_CLIENT=(ssh -N -T -i "$1/user_key" -p "$2" -c aes128-gcm@openssh.com -o BatchMode=yes
    -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o ExitOnForwardFailure=yes -o LogLevel=ERROR
    -R "127.0.0.1:$3:127.0.0.1:$4" "$(id -un)@127.0.0.1")
}
