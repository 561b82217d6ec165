// l2announcer ARP and Neighbour Solicitation responder: a tc ingress (clsact, direct-action)
// program, attached once for ARP frames and once for IPv6 frames.
//
// It answers an ARP request in the kernel when {target IP, ingress ifindex} is a key of
// cilium_l2_responder_v4, and an ICMPv6 Neighbour Solicitation when {target address, ingress
// ifindex} is a key of l2announcer_responder_v6, rewriting the request into the reply and sending
// it back out of the interface it came in on; everything else is left to the kernel (and to any
// tc filter after ours: "pass" is TC_ACT_UNSPEC, which continues the filter chain and then
// delivers).
//
// One compiled object serves every interface: the interface's MAC comes from the per-ifindex
// map l2announcer_ifaces, filled by the loader at attach time, instead of a compile-time
// define per device (compiling once keeps agent start fast).
//
// Checks, in addition to the reference (cilium bpf/lib/arp.h): protocol type IPv4, lengths 6/4,
// the Ethernet source is neither our own MAC nor a group address, and the frame carries no
// (hardware-accelerated) VLAN tag. The agent's liveness stamp must be younger than the renew
// deadline (not the lease duration), so a wedged holder is silent before any other node can
// acquire its lease.
//
// The map sizes are passed as -D defines, so that bpf/maps.py holds the one definition of them.
// The maps are plain tables here: bpf/program.py pins them under the configured BPF root, or
// loads the program against the maps already pinned there (so counters survive restarts).
// bcc's BPF_TABLE_PINNED cannot do the latter without CAP_SYS_ADMIN: it reopens a pinned map by
// its id (BPF_MAP_GET_FD_BY_ID), which the agent is not granted.

#include <uapi/linux/bpf.h>
#include <uapi/linux/pkt_cls.h>
#include <uapi/linux/if_ether.h>

#if !defined(L2_RESPONDER_MAX_ENTRIES) || !defined(L2_IFACES_MAX_ENTRIES) || \
    !defined(L2_RESPONDER_V6_MAX_ENTRIES)
#error "the map sizes (bpf/maps.py) must be defined"
#endif

#define PASS TC_ACT_UNSPEC

#define ARPHRD_ETHER_BE 0x0100   /* htons(1) */
#define ETH_P_IP_BE 0x0008       /* htons(0x0800) */
#define ETH_P_ARP_BE 0x0608      /* htons(0x0806) */
#define ARPOP_REQUEST_BE 0x0100  /* htons(1) */
#define ARPOP_REPLY_BE 0x0200    /* htons(2) */

#define LIVENESS_STAMP 0   /* CLOCK_MONOTONIC ns of the agent's last stamp; 0 = never */
#define LIVENESS_MAX_AGE 1 /* ns; answers stop when the stamp is older; 0 = never answer */

struct l2_responder_v4_key {
    __u32 ip4;     /* network order */
    __u32 ifindex; /* host order */
};

struct l2_responder_v4_stats {
    __u64 responses_sent;
};

struct l2_responder_v6_key {
    __u8 ip6[16];  /* network order */
    __u32 ifindex; /* host order */
};

struct l2announcer_iface {
    __u8 mac[6];
    __u8 pad[2];
};

BPF_F_TABLE("hash", struct l2_responder_v4_key, struct l2_responder_v4_stats,
            cilium_l2_responder_v4, L2_RESPONDER_MAX_ENTRIES, BPF_F_NO_PREALLOC);
BPF_TABLE("array", __u32, __u64, l2announcer_liveness, 2);
BPF_F_TABLE("hash", struct l2_responder_v6_key, struct l2_responder_v4_stats,
            l2announcer_responder_v6, L2_RESPONDER_V6_MAX_ENTRIES, BPF_F_NO_PREALLOC);
BPF_F_TABLE("hash", __u32, struct l2announcer_iface, l2announcer_ifaces,
            L2_IFACES_MAX_ENTRIES, BPF_F_NO_PREALLOC);

/* Ethernet header + Ethernet/IPv4 ARP body: the 42 bytes we read and rewrite. */
struct arp_frame {
    __u8 h_dest[6];
    __u8 h_source[6];
    __u16 h_proto;
    __u16 ar_hrd;
    __u16 ar_pro;
    __u8 ar_hln;
    __u8 ar_pln;
    __u16 ar_op;
    __u8 ar_sha[6];
    __u8 ar_sip[4];
    __u8 ar_tha[6];
    __u8 ar_tip[4];
} __attribute__((packed));

static __always_inline int mac_eq(const __u8 *a, const __u8 *b)
{
    return a[0] == b[0] && a[1] == b[1] && a[2] == b[2] && a[3] == b[3] && a[4] == b[4] &&
           a[5] == b[5];
}

static __always_inline int mac_is_broadcast(const __u8 *a)
{
    return (a[0] & a[1] & a[2] & a[3] & a[4] & a[5]) == 0xff;
}

static __always_inline int agent_is_live(void)
{
    __u32 stamp_idx = LIVENESS_STAMP, max_idx = LIVENESS_MAX_AGE;
    __u64 *stamp = l2announcer_liveness.lookup(&stamp_idx);
    __u64 *max_age = l2announcer_liveness.lookup(&max_idx);
    if (!stamp || !max_age)
        return 0;
    __u64 s = *stamp, m = *max_age;
    if (s == 0 || m == 0)
        return 0;
    /* A stamp from the future wraps to a huge age: treated as stale, the safe side. */
    return bpf_ktime_get_ns() - s <= m;
}

static __always_inline int answer_ns(struct __sk_buff *skb);

static __always_inline int answer_arp(struct __sk_buff *skb)
{
    struct arp_frame f;

    /* The kernel moved an 802.1Q/802.1ad tag out of the frame before tc ingress: the request
     * belongs to a VLAN, not to this interface's untagged segment. */
    if (skb->vlan_present)
        return PASS;
    /* Fails when the frame is shorter than 42 bytes: truncated frames go to the kernel. */
    if (bpf_skb_load_bytes(skb, 0, &f, sizeof(f)) < 0)
        return PASS;
    if (f.h_proto != ETH_P_ARP_BE || f.ar_op != ARPOP_REQUEST_BE || f.ar_hrd != ARPHRD_ETHER_BE ||
        f.ar_pro != ETH_P_IP_BE || f.ar_hln != 6 || f.ar_pln != 4)
        return PASS;
    /* A group source address is never a station we could answer; it would turn the reply
     * into a broadcast. */
    if (f.h_source[0] & 1)
        return PASS;

    __u32 ifindex = skb->ingress_ifindex;
    struct l2announcer_iface *iface = l2announcer_ifaces.lookup(&ifindex);
    if (!iface)
        return PASS;
    __u8 mac[6];
    __builtin_memcpy(mac, iface->mac, 6);
    if (!mac_is_broadcast(f.h_dest) && !mac_eq(f.h_dest, mac))
        return PASS;
    /* Our own frame looped back (or a spoofer using our MAC): answering it would talk to
     * ourselves. */
    if (mac_eq(f.h_source, mac))
        return PASS;

    struct l2_responder_v4_key key = {};
    __builtin_memcpy(&key.ip4, f.ar_tip, 4);
    key.ifindex = ifindex;
    struct l2_responder_v4_stats *stats = cilium_l2_responder_v4.lookup(&key);
    if (!stats)
        return PASS;
    if (!agent_is_live())
        return PASS;

    /* Rewrite in place, as the reference does: length, padding, hrd/pro/hln/pln unchanged. */
    __u8 requester[6];
    __u8 sip[4];
    __builtin_memcpy(requester, f.h_source, 6);
    __builtin_memcpy(sip, f.ar_sip, 4);
    __builtin_memcpy(f.h_dest, requester, 6);
    __builtin_memcpy(f.h_source, mac, 6);
    f.ar_op = ARPOP_REPLY_BE;
    __builtin_memcpy(f.ar_sha, mac, 6);
    __builtin_memcpy(f.ar_sip, f.ar_tip, 4);
    __builtin_memcpy(f.ar_tha, requester, 6);
    __builtin_memcpy(f.ar_tip, sip, 4);
    /* One store: it either writes all 42 bytes or none (it fails before writing), so on
     * failure the untouched request can still go to the kernel. */
    if (bpf_skb_store_bytes(skb, 0, &f, sizeof(f), 0) < 0)
        return PASS;

    int ret = bpf_redirect(skb->ifindex, 0);
    if (ret == TC_ACT_REDIRECT)
        __sync_fetch_and_add(&stats->responses_sent, 1);
    return ret;
}

/* ---- IPv6 Neighbour Discovery ------------------------------------------------------------ */

#define ETH_P_IPV6_BE 0xDD86 /* htons(0x86dd) */
#define IPPROTO_ICMPV6 58
#define ND_NEIGHBOR_SOLICIT 135
#define ND_NEIGHBOR_ADVERT 136
#define ND_OPT_SOURCE_LL 1
#define ND_OPT_TARGET_LL 2
#define NA_FLAG_SOLICITED 0x40
#define NA_FLAG_OVERRIDE 0x20
#define ND_HOP_LIMIT 255
#define NS_OFF 14                  /* the IPv6 header, after the Ethernet header */
#define ICMP6_OFF (NS_OFF + 40)    /* the ICMPv6 message */
#define NS_LEN 24                  /* type, code, checksum, reserved, target */
/* NS_MAX_LEN (a -D define from bpf/ndp.py): the longest solicitation answered, in octets. It
 * bounds the one loop over the message; longer ones (more than 29 options) go to the kernel. */
#ifndef NS_MAX_LEN
#error "NS_MAX_LEN (bpf/ndp.py) must be defined"
#endif
#define NA_LEN 32                  /* the NA and its Target link-layer option */
#define NA_FRAME_LEN (ICMP6_OFF + NA_LEN)

/* Ethernet + IPv6 header + the fixed part of a Neighbour Solicitation: the 78 bytes read first. */
struct ns_frame {
    __u8 h_dest[6];
    __u8 h_source[6];
    __u16 h_proto;
    __u8 ip_vtc;     /* version (4 bits), traffic class high nibble */
    __u8 ip_tcfl[3];
    __u16 payload_len;
    __u8 nexthdr;
    __u8 hop_limit;
    __u8 saddr[16];
    __u8 daddr[16];
    __u8 icmp_type;
    __u8 icmp_code;
    __u16 icmp_cksum;
    __u32 reserved;
    __u8 target[16];
} __attribute__((packed));

/* The ICMPv6 pseudo-header followed by the advertisement: what the checksum covers, laid out
 * with 4-byte alignment for bpf_csum_diff. */
struct na_csum {
    __u8 saddr[16];
    __u8 daddr[16];
    __u32 len;       /* network order */
    __u32 nexthdr;   /* network order */
    __u8 type;
    __u8 code;
    __u16 cksum;
    __u8 flags;
    __u8 reserved[3];
    __u8 target[16];
    __u8 opt_type;
    __u8 opt_len;
    __u8 opt_mac[6];
};

struct na_frame {
    __u8 h_dest[6];
    __u8 h_source[6];
    __u16 h_proto;
    __u8 ip_vtc;
    __u8 ip_tcfl[3];
    __u16 payload_len;
    __u8 nexthdr;
    __u8 hop_limit;
    __u8 saddr[16];
    __u8 daddr[16];
    __u8 icmp[NA_LEN];
} __attribute__((packed));

struct pseudo_header {
    __u8 saddr[16];
    __u8 daddr[16];
    __u32 len;
    __u32 nexthdr;
};

static __always_inline __u32 csum_fold(__u64 sum)
{
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    return (__u32)sum;
}

static __always_inline int ip6_is_unspecified(const __u8 *a)
{
    __u64 hi, lo;
    __builtin_memcpy(&hi, a, 8);
    __builtin_memcpy(&lo, a + 8, 8);
    return (hi | lo) == 0;
}

static __always_inline int ip6_eq(const __u8 *a, const __u8 *b)
{
    __u64 ah, al, bh, bl;
    __builtin_memcpy(&ah, a, 8);
    __builtin_memcpy(&al, a + 8, 8);
    __builtin_memcpy(&bh, b, 8);
    __builtin_memcpy(&bl, b + 8, 8);
    return ah == bh && al == bl;
}

/* ff02::1:ffXX:XXXX, XX:XXXX being the target's low 24 bits. */
static __always_inline int is_solicited_node_of(const __u8 *a, const __u8 *target)
{
    return a[0] == 0xff && a[1] == 0x02 && a[2] == 0 && a[3] == 0 && a[4] == 0 && a[5] == 0 &&
           a[6] == 0 && a[7] == 0 && a[8] == 0 && a[9] == 0 && a[10] == 0 && a[11] == 1 &&
           a[12] == 0xff && a[13] == target[13] && a[14] == target[14] && a[15] == target[15];
}

/* Checks, beyond the validation a receiver must do before using a solicitation (hop limit 255,
 * code 0, ICMPv6 length of at least 24 octets, a valid checksum, a target that is not multicast,
 * options of non-zero length, and for a source of :: a solicited-node destination and no source
 * link-layer option): no extension headers (the kernel parses those), an IPv6 destination that
 * is the target or its solicited-node group, an Ethernet destination that is our MAC or that
 * group's MAC, an Ethernet and IPv6 source that are not group addresses, a length that is a
 * whole number of 8-octet options and at most NS_MAX_LEN, a source link-layer option (the first
 * one counts, as in the kernel) that is 8 octets long. */
static __always_inline int answer_ns(struct __sk_buff *skb)
{
    struct ns_frame f;

    if (skb->vlan_present)
        return PASS;
    if (bpf_skb_load_bytes(skb, 0, &f, sizeof(f)) < 0)
        return PASS;
    if (f.h_proto != ETH_P_IPV6_BE || (f.ip_vtc >> 4) != 6 || f.nexthdr != IPPROTO_ICMPV6 ||
        f.icmp_type != ND_NEIGHBOR_SOLICIT)
        return PASS;
    if (f.h_source[0] & 1)
        return PASS;

    __u32 ifindex = skb->ingress_ifindex;
    struct l2announcer_iface *iface = l2announcer_ifaces.lookup(&ifindex);
    if (!iface)
        return PASS;
    __u8 mac[6];
    __builtin_memcpy(mac, iface->mac, 6);
    if (mac_eq(f.h_source, mac))
        return PASS;
    int to_group = is_solicited_node_of(f.daddr, f.target);
    if (!to_group && !ip6_eq(f.daddr, f.target))
        return PASS;
    if (!mac_eq(f.h_dest, mac) &&
        !(f.h_dest[0] == 0x33 && f.h_dest[1] == 0x33 && f.h_dest[2] == 0xff &&
          f.h_dest[3] == f.target[13] && f.h_dest[4] == f.target[14] &&
          f.h_dest[5] == f.target[15]))
        return PASS;

    struct l2_responder_v6_key key = {};
    __builtin_memcpy(key.ip6, f.target, 16);
    key.ifindex = ifindex;
    struct l2_responder_v4_stats *stats = l2announcer_responder_v6.lookup(&key);
    if (!stats)
        return PASS;

    /* Validation of the solicitation. */
    if (f.hop_limit != ND_HOP_LIMIT || f.icmp_code != 0)
        return PASS;
    if (f.saddr[0] == 0xff || f.target[0] == 0xff)
        return PASS;
    __u32 len = bpf_ntohs(f.payload_len);
    if (len < NS_LEN || len > NS_MAX_LEN || (len & 7))
        return PASS;
    int dad = ip6_is_unspecified(f.saddr);
    if (dad && !to_group)
        return PASS;

    /* One pass over the message, 8 bytes at a time (a load past the frame's end fails: a
     * truncated message is not answered): every chunk goes into the checksum, and each option,
     * 8-byte aligned like the chunks, is read from the chunk it starts in. The options must
     * each have a non-zero length and fill the message exactly. Nothing after the loop reads
     * the length, which lets the verifier prune its exits. */
    struct pseudo_header ph = {};
    __builtin_memcpy(ph.saddr, f.saddr, 16);
    __builtin_memcpy(ph.daddr, f.daddr, 16);
    ph.len = bpf_htonl(len);
    ph.nexthdr = bpf_htonl(IPPROTO_ICMPV6);
    __s64 sum = bpf_csum_diff((__be32 *)0, 0, (__be32 *)&ph, sizeof(ph), 0);
    if (sum < 0)
        return PASS;
    __u8 reply_to[6];
    __builtin_memcpy(reply_to, f.h_source, 6);
    int have_sll = 0;
    __u32 next_opt = NS_LEN;
    for (int i = 0; i < NS_MAX_LEN / 8; i++) {
        /* Keep the counter's bound in the program: clang would otherwise drop it as implied by
         * len <= NS_MAX_LEN, a bound the verifier may not see on a spilled copy of len. */
        asm volatile("" : "+r"(i));
        __u32 off = i * 8;
        if (off >= len)
            break;
        __u8 chunk[8];
        if (bpf_skb_load_bytes(skb, ICMP6_OFF + off, chunk, 8) < 0)
            return PASS;
        sum = bpf_csum_diff((__be32 *)0, 0, (__be32 *)chunk, 8, (__u32)sum);
        if (off != next_opt)
            continue;
        if (chunk[1] == 0)
            return PASS;
        next_opt += (__u32)chunk[1] * 8;
        if (next_opt > len)
            return PASS;
        if (chunk[0] == ND_OPT_SOURCE_LL && !have_sll) {
            /* From the unspecified address there is no one to reach at that address. */
            if (dad || chunk[1] != 1)
                return PASS;
            __builtin_memcpy(reply_to, chunk + 2, 6);
            have_sll = 1;
        }
    }
    if (csum_fold(sum) != 0xffff)
        return PASS;
    if (have_sll && (reply_to[0] & 1))
        return PASS; /* a group link-layer address: the answer would go to every station */
    if (!agent_is_live())
        return PASS;

    /* The advertisement: from the target, to the soliciting node, or to all nodes for a
     * duplicate address probe (which is not marked solicited); always overriding, with our MAC
     * in the Target link-layer option. */
    struct na_csum c = {};
    __builtin_memcpy(c.saddr, f.target, 16);
    if (dad) {
        c.daddr[0] = 0xff;
        c.daddr[1] = 0x02;
        c.daddr[15] = 0x01;
    } else {
        __builtin_memcpy(c.daddr, f.saddr, 16);
    }
    c.len = bpf_htonl(NA_LEN);
    c.nexthdr = bpf_htonl(IPPROTO_ICMPV6);
    c.type = ND_NEIGHBOR_ADVERT;
    c.flags = dad ? NA_FLAG_OVERRIDE : (NA_FLAG_SOLICITED | NA_FLAG_OVERRIDE);
    __builtin_memcpy(c.target, f.target, 16);
    c.opt_type = ND_OPT_TARGET_LL;
    c.opt_len = 1;
    __builtin_memcpy(c.opt_mac, mac, 6);
    sum = bpf_csum_diff((__be32 *)0, 0, (__be32 *)&c, sizeof(c), 0);
    if (sum < 0)
        return PASS;
    c.cksum = (__u16)~csum_fold(sum);

    struct na_frame r = {};
    if (dad) {
        r.h_dest[0] = 0x33;
        r.h_dest[1] = 0x33;
        r.h_dest[5] = 0x01;
    } else {
        __builtin_memcpy(r.h_dest, reply_to, 6);
    }
    __builtin_memcpy(r.h_source, mac, 6);
    r.h_proto = ETH_P_IPV6_BE;
    r.ip_vtc = 0x60;
    r.payload_len = bpf_htons(NA_LEN);
    r.nexthdr = IPPROTO_ICMPV6;
    r.hop_limit = ND_HOP_LIMIT;
    __builtin_memcpy(r.saddr, c.saddr, 16);
    __builtin_memcpy(r.daddr, c.daddr, 16);
    __builtin_memcpy(r.icmp, &c.type, NA_LEN);

    /* The reply has its own length: resize first (a failure leaves the request untouched for
     * the kernel), then one store. A store failing after a resize would leave a mangled frame,
     * which is dropped rather than delivered. */
    if (skb->len != NA_FRAME_LEN && bpf_skb_change_tail(skb, NA_FRAME_LEN, 0) < 0)
        return PASS;
    if (bpf_skb_store_bytes(skb, 0, &r, sizeof(r), 0) < 0)
        return TC_ACT_SHOT;

    int ret = bpf_redirect(skb->ifindex, 0);
    if (ret == TC_ACT_REDIRECT)
        __sync_fetch_and_add(&stats->responses_sent, 1);
    return ret;
}

int l2_responder(struct __sk_buff *skb)
{
    /* skb->protocol is the ethertype in network order: the tc filters deliver ARP and IPv6. */
    if (skb->protocol == ETH_P_IPV6_BE)
        return answer_ns(skb);
    return answer_arp(skb);
}
