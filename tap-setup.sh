#!/usr/bin/env bash
# tap-setup.sh: create, remove or show the TAP interface that smolsock's TAP
# examples and tests run on. The stack (in userspace) is 192.168.69.1 and fdaa::1;
# this script gives the Linux side of the link 192.168.69.100/24 and fdaa::100/64.
#
# With --netns NAME everything happens inside that network namespace (created if
# missing, deleted by `down`), so nothing touches the host's own network.
set -euo pipefail

readonly PROG=tap-setup.sh
readonly NETNS_DIR=/var/run/netns
readonly TUN_PATH=/dev/net/tun

usage() {
    cat <<EOF
Usage: sudo ./$PROG up|down|status [options]

  up      create the TAP interface owned by the calling user, set its addresses
          and bring it up; running it again is harmless
  down    remove the TAP interface (and, with --netns, the namespace)
  status  show the interface, its owner, addresses and namespace
          (exit status 0 if it exists, 1 if not)

Options:
  --name NAME     interface name (default tap0)
  --ipv4 CIDR     Linux-side IPv4 address (default 192.168.69.100/24, 'none' to skip)
  --ipv6 CIDR     Linux-side IPv6 address (default fdaa::100/64, 'none' to skip)
  --netns NAME    work inside this network namespace (created by up, deleted by down)
  --user USER     owner of the interface (default: \$SUDO_USER, else the caller)
  -h, --help      show this help

Run a command on the Linux side of a namespaced link with:
  sudo ip netns exec NAME ping 192.168.69.1
EOF
}

die() {
    echo "$PROG: error: $*" >&2
    exit 1
}

say() {
    echo "$PROG: $*"
}

action=""
name=tap0
ipv4=192.168.69.100/24
ipv6=fdaa::100/64
netns=""
owner=""

need_value() {
    [[ $# -ge 2 && -n $2 ]] || die "$1 needs a value (see --help)"
}

while [[ $# -gt 0 ]]; do
    case $1 in
        up | down | status)
            [[ -z $action ]] || die "give one action, not '$action' and '$1'"
            action=$1
            shift
            ;;
        --name)
            need_value "$@"
            name=$2
            shift 2
            ;;
        --ipv4)
            need_value "$@"
            ipv4=$2
            shift 2
            ;;
        --ipv6)
            need_value "$@"
            ipv6=$2
            shift 2
            ;;
        --netns)
            need_value "$@"
            netns=$2
            shift 2
            ;;
        --user)
            need_value "$@"
            owner=$2
            shift 2
            ;;
        -h | --help)
            usage
            exit 0
            ;;
        *)
            usage >&2
            die "unknown argument '$1'"
            ;;
    esac
done

[[ -n $action ]] || {
    usage >&2
    die "no action given: up, down or status"
}

# Interface names are at most 15 bytes (IFNAMSIZ - 1); keep both names to
# characters that need no quoting anywhere.
[[ $name =~ ^[A-Za-z0-9_.-]{1,15}$ ]] ||
    die "invalid interface name '$name' (1 to 15 of A-Z a-z 0-9 _ . -)"
[[ -z $netns || $netns =~ ^[A-Za-z0-9_.-]{1,64}$ ]] ||
    die "invalid namespace name '$netns' (1 to 64 of A-Z a-z 0-9 _ . -)"

command -v ip >/dev/null 2>&1 ||
    die "'ip' not found: install iproute2 (e.g. apt-get install iproute2)"

# `status` of the host namespace only reads; everything else changes the network
# or enters a namespace, which needs root.
if [[ $action != status || -n $netns ]] && [[ $EUID -ne 0 ]]; then
    die "must be run as root: sudo ./$PROG $action ..."
fi

where="the host namespace"
[[ -z $netns ]] || where="namespace $netns"

# `ip` in the right namespace.
ipn() {
    if [[ -n $netns ]]; then
        ip -n "$netns" "$@"
    else
        ip "$@"
    fi
}

netns_exists() {
    [[ -n $netns && -e $NETNS_DIR/$netns ]]
}

link_exists() {
    ipn link show dev "$name" >/dev/null 2>&1
}

# Prints "<mode> <uid or ->" for the tun/tap device $name, nothing if $name is
# not a tun/tap device. `ip tuntap show` lines look like
# "tap0: tap persist user 1000" (no "user" field when nobody owns it).
tuntap_info() {
    local listing dev mode rest word uid previous
    listing=$(ipn tuntap show 2>/dev/null) || listing=""
    while read -r dev mode rest; do
        [[ $dev == "$name:" ]] || continue
        uid=-
        previous=""
        for word in $rest; do
            [[ $previous == user ]] && uid=$word
            previous=$word
        done
        echo "$mode $uid"
    done <<<"$listing"
}

# The uid the interface should belong to.
owner_uid() {
    local user=${owner:-${SUDO_USER:-}}
    if [[ -z $user ]]; then
        id -u
        return
    fi
    id -u "$user" 2>/dev/null || die "unknown user '$user'"
}

cmd_up() {
    [[ -c $TUN_PATH ]] ||
        die "$TUN_PATH is missing: load the tun module (modprobe tun) or, in a container, pass the device in"
    local uid
    uid=$(owner_uid)

    if [[ -n $netns ]] && ! netns_exists; then
        ip netns add "$netns"
        say "created namespace $netns"
    fi

    if link_exists; then
        local info mode current_uid
        info=$(tuntap_info)
        [[ -n $info ]] ||
            die "'$name' already exists in $where and is not a TAP device; pick another --name"
        read -r mode current_uid <<<"$info"
        [[ $mode == tap ]] ||
            die "'$name' already exists in $where as a $mode device, not a TAP; pick another --name"
        [[ $current_uid == "$uid" ]] ||
            die "TAP '$name' already exists in $where owned by uid $current_uid, not $uid; run '$PROG down' first"
        say "TAP $name already exists in $where (owner uid $uid)"
    else
        ipn tuntap add name "$name" mode tap user "$uid"
        say "created TAP $name in $where (owner uid $uid)"
    fi

    # `replace` adds the address or leaves it as it is, so `up` can run again.
    if [[ $ipv4 != none ]]; then
        ipn addr replace "$ipv4" dev "$name"
    fi
    if [[ $ipv6 != none ]]; then
        # nodad: usable at once, no duplicate address detection delay.
        ipn addr replace "$ipv6" dev "$name" nodad
    fi
    ipn link set dev "$name" up
    if [[ -n $netns ]]; then
        # Kernel-to-kernel comparisons in the namespace need loopback.
        ipn link set dev lo up
    fi
    say "$name is up: Linux side ${ipv4/none/no IPv4}, ${ipv6/none/no IPv6}"
}

cmd_down() {
    if [[ -n $netns ]] && ! netns_exists; then
        say "namespace $netns does not exist; nothing to do"
        return
    fi
    if link_exists; then
        local info mode _uid
        info=$(tuntap_info)
        [[ -n $info ]] || die "'$name' in $where is not a TAP device; not removing it"
        read -r mode _uid <<<"$info"
        [[ $mode == tap ]] || die "'$name' in $where is a $mode device, not a TAP; not removing it"
        ipn tuntap del name "$name" mode tap
        say "removed TAP $name from $where"
    else
        say "no interface $name in $where"
    fi
    if [[ -n $netns ]]; then
        ip netns del "$netns"
        say "deleted namespace $netns"
    fi
}

cmd_status() {
    if [[ -n $netns ]] && ! netns_exists; then
        say "namespace $netns does not exist"
        exit 1
    fi
    if ! link_exists; then
        say "no interface $name in $where"
        exit 1
    fi
    local info mode uid flags state addresses user
    info=$(tuntap_info)
    if [[ -n $info ]]; then
        read -r mode uid <<<"$info"
    else
        mode="not a tun/tap device"
        uid=-
    fi
    user=""
    if [[ $uid != - ]]; then
        user=$(getent passwd "$uid" 2>/dev/null | cut -d: -f1 || true)
    fi
    flags=$(ipn -o link show dev "$name" | sed -n 's/^[0-9]*: [^<]*<\([^>]*\)>.*/\1/p')
    case ",$flags," in
        *,NO-CARRIER,*) state="up, no carrier (no program has it open)" ;;
        *,UP,*) state="up" ;;
        *) state="down" ;;
    esac
    addresses=$(ipn -o addr show dev "$name" | awk '{print $4}' | tr '\n' ' ')
    echo "interface: $name"
    echo "namespace: ${netns:-(host)}"
    echo "type:      $mode"
    echo "owner:     uid $uid${user:+ ($user)}"
    echo "state:     $state"
    echo "addresses: ${addresses:-(none)}"
}

case $action in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
esac
