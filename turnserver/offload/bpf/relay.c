// SPDX-License-Identifier: (MIT OR GPL-2.0-only)
//
// Ferry's kernel fast path: a TC (tcx) ingress program that relays TURN ChannelData for
// UDP clients with UDP relays, both ways, exactly as Ferry's user-space data plane would,
// for the channels Ferry's allocation table put into its maps:
//
//   client -> peer: a ChannelData message to a listener, from a client 5-tuple with a bound
//                   channel, leaves as a UDP datagram from the relay address to the
//                   channel's peer (4-byte header stripped, padding dropped);
//   peer -> client: a datagram to a relay port from the peer of a bound channel leaves as
//                   ChannelData from the listener to the client.
//
// Everything else goes up to user space unchanged (TCX_NEXT): STUN, indications, peers
// without a channel, expired channels, fragments, IP options, IPv6, anything malformed,
// anything that would not fit the egress MTU. The program never refreshes a lifetime: a
// map entry carries the monotonic time at which its channel (or its permission) expires,
// and past it the packet goes up, where Ferry applies the RFC.
//
// The headers stay where they are and the payload moves by the 4 bytes of the ChannelData
// header: the skb's checksum-offload metadata (csum_start of CHECKSUM_PARTIAL packets from
// local senders, e.g. over veth) stays valid, and the UDP checksum is updated
// incrementally with bpf_l4_csum_replace, which knows each checksum state.
//
// Build: make bpf (clang via bpf2go); the object and its Go bindings are committed.

#include <linux/bpf.h>
#include <linux/if_ether.h>
#include <linux/in.h>
#include <linux/ip.h>
#include <linux/pkt_cls.h>
#include <linux/udp.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_helpers.h>

// tcx return codes (linux/bpf.h of 6.6; the build headers may be older).
#define FERRY_TCX_NEXT -1
#define FERRY_TCX_REDIRECT 7

#define CHANNEL_HEADER 4
#define MIN_CHANNEL 0x4000
#define MAX_CHANNEL 0x7FFF
// The largest UDP payload relayed in the kernel; larger datagrams go up.
#define MAX_PAYLOAD 1500
#define RELAY_TTL 64
#define IP_DF 0x4000
#define IP_MF_OFFSET 0x3FFF

// A UDP listener, by its bound address (ip 0: the wildcard).
struct listener_key {
	__be32 ip;
	__be16 port;
	__u16 pad;
};

// A channel as the client uses it: client 5-tuple (its listener by bound address) and
// number.
struct chan_key {
	__be32 client_ip;
	__be32 listener_ip;
	__be16 client_port;
	__be16 listener_port;
	__u16 channel;
	__u16 pad;
};

// Where a channel's ChannelData goes: from relay_ip:relay_port to peer_ip:peer_port out
// of ifindex, until (CLOCK_MONOTONIC ns); slot counts it.
struct chan_val {
	__u64 until;
	__be32 relay_ip;
	__be32 peer_ip;
	__be16 relay_port;
	__be16 peer_port;
	__u32 slot;
	__u32 ifindex;
	__u32 pad;
};

// A channel as its peer uses it: the peer's address and the relay port it sends to.
struct peer_key {
	__be32 peer_ip;
	__be16 peer_port;
	__be16 relay_port;
};

// Where a peer's datagrams go: ChannelData on channel from listener_ip:listener_port to
// client_ip:client_port out of ifindex, until; relay_bound is the relay socket's bound IP
// (0: any local address).
struct peer_val {
	__u64 until;
	__be32 client_ip;
	__be32 listener_ip;
	__be16 client_port;
	__be16 listener_port;
	__u16 channel;
	__u16 pad;
	__be32 relay_bound;
	__u32 slot;
	__u32 ifindex;
	__u32 pad2;
};

// What the kernel relayed for one allocation (one slot), per CPU: payload bytes, as Ferry
// counts them in user space.
struct counters {
	__u64 to_peer_packets;
	__u64 to_peer_bytes;
	__u64 from_peer_packets;
	__u64 from_peer_bytes;
};

// Global per-CPU statistics, by index.
enum stat {
	STAT_TO_PEER_PACKETS,
	STAT_TO_PEER_BYTES,
	STAT_FROM_PEER_PACKETS,
	STAT_FROM_PEER_BYTES,
	STAT_PASS_STUN,      // to a listener, not ChannelData (STUN, indications)
	STAT_PASS_UNBOUND,   // ChannelData without a channel in the map
	STAT_PASS_EXPIRED,   // a channel or permission past its lifetime
	STAT_PASS_MALFORMED, // lengths that do not add up, non-zero padding, too big
	STAT_PASS_MTU,       // would not fit the egress interface's MTU
	STAT_MAX,
};

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 64);
	__type(key, struct listener_key);
	__type(value, __u8);
} listeners SEC(".maps");

// Local IPv4 addresses: a wildcard listener or relay takes packets to these only.
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 256);
	__type(key, __be32);
	__type(value, __u8);
} locals SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, struct chan_key);
	__type(value, struct chan_val);
} channels SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(map_flags, BPF_F_NO_PREALLOC);
	__uint(max_entries, 262144);
	__type(key, struct peer_key);
	__type(value, struct peer_val);
} peers SEC(".maps");

// Sized to the relay port pool at load time: a slot is a relay port's offset in the pool.
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct counters);
} usage SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, STAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} stats SEC(".maps");

static __always_inline void count(__u32 index, __u64 n)
{
	__u64 *v = bpf_map_lookup_elem(&stats, &index);
	if (v)
		*v += n;
}

static __always_inline int pass(__u32 reason)
{
	count(reason, 1);
	return FERRY_TCX_NEXT;
}

// One's-complement helpers for incremental checksum updates (RFC 1624): a diff is the sum
// of the new 16-bit words and the complements of the old ones.
static __always_inline __u32 csum_word(__u32 sum, __u16 old, __u16 new)
{
	return sum + (__u16)~old + new;
}

static __always_inline __u32 csum_word32(__u32 sum, __u32 old, __u32 new)
{
	sum = csum_word(sum, old >> 16, new >> 16);
	return csum_word(sum, old & 0xffff, new & 0xffff);
}

static __always_inline __u32 csum_fold32(__u32 sum)
{
	sum = (sum & 0xffff) + (sum >> 16);
	sum = (sum & 0xffff) + (sum >> 16);
	return sum;
}

// ip_csum computes the checksum of a 20-byte IPv4 header (its check field zero).
static __always_inline __u16 ip_csum(struct iphdr *ip)
{
	__u16 *w = (__u16 *)ip;
	__u32 sum = 0;
#pragma unroll
	for (int i = 0; i < 10; i++)
		sum += w[i];
	return ~csum_fold32(sum);
}

// set_ip rewrites the IPv4 header for a datagram Ferry sends: as from a fresh socket (no
// TOS, TTL 64, DF as Linux sets it on UDP), keeping the ID.
static __always_inline void set_ip(struct iphdr *ip, __be32 src, __be32 dst, __u16 tot_len)
{
	ip->tos = 0;
	ip->tot_len = bpf_htons(tot_len);
	ip->frag_off = bpf_htons(IP_DF);
	ip->ttl = RELAY_TTL;
	ip->saddr = src;
	ip->daddr = dst;
	ip->check = 0;
	ip->check = ip_csum(ip);
}

#define ETH_LEN sizeof(struct ethhdr)
#define IP_LEN sizeof(struct iphdr)
#define UDP_OFF (ETH_LEN + IP_LEN)
#define PAYLOAD_OFF (UDP_OFF + sizeof(struct udphdr))
#define CSUM_OFF (UDP_OFF + offsetof(struct udphdr, check))

// move_down moves n bytes at data+PAYLOAD_OFF+4 to data+PAYLOAD_OFF (n <= MAX_PAYLOAD),
// low addresses first. Every access is at a constant offset from a checked pointer, which
// is how the verifier follows it.
static __always_inline int move_down(struct __sk_buff *skb, __u32 n)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *p = data + PAYLOAD_OFF;
	__u32 words = n >> 3, i;
	for (i = 0; i < words && i < MAX_PAYLOAD / 8; i++) {
		__u8 *q = p + i * 8;
		if ((void *)(q + CHANNEL_HEADER + 8) > data_end)
			return -1;
		*(__u64 *)q = *(__u64 *)(q + CHANNEL_HEADER);
	}
	if (words > MAX_PAYLOAD / 8)
		return -1;
	__u8 *q = p + words * 8;
	for (i = 0; i < 8 && words * 8 + i < n; i++) {
		if ((void *)(q + CHANNEL_HEADER + 1) > data_end)
			return -1;
		q[0] = q[CHANNEL_HEADER];
		q++;
	}
	return 0;
}

// move_up moves n bytes at data+PAYLOAD_OFF to data+PAYLOAD_OFF+4 (n <= MAX_PAYLOAD), high
// addresses first.
static __always_inline int move_up(struct __sk_buff *skb, __u32 n)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	__u8 *p = data + PAYLOAD_OFF;
	__u32 words = n >> 3, i;
	if (n > MAX_PAYLOAD)
		return -1;
	__u8 *q = p + n;
	for (i = 0; i < 8 && i < (n & 7); i++) {
		q--;
		if ((void *)(q + CHANNEL_HEADER + 1) > data_end)
			return -1;
		q[CHANNEL_HEADER] = q[0];
	}
	for (i = 0; i < words && i < MAX_PAYLOAD / 8; i++) {
		__u32 at = (words - 1 - i) * 8;
		if (at > MAX_PAYLOAD)
			return -1;
		__u8 *w = p + at;
		if ((void *)(w + CHANNEL_HEADER + 8) > data_end)
			return -1;
		*(__u64 *)(w + CHANNEL_HEADER) = *(__u64 *)w;
	}
	return 0;
}

static __always_inline int lookup_listener(__be32 ip, __be16 port, __be32 *bound)
{
	struct listener_key k = {.ip = ip, .port = port};
	if (bpf_map_lookup_elem(&listeners, &k)) {
		*bound = ip;
		return 1;
	}
	k.ip = 0;
	if (bpf_map_lookup_elem(&listeners, &k) && bpf_map_lookup_elem(&locals, &ip)) {
		*bound = 0;
		return 1;
	}
	return 0;
}

// A relayed datagram: its new addresses (network order) and UDP length, its checksum's
// change in two parts (the pseudo header's, which bpf_l4_csum_replace must know as such for
// CHECKSUM_PARTIAL packets, and the rest), and where it goes and is counted.
struct relayed {
	__be32 src_ip;
	__be32 dst_ip;
	__be16 src_port;
	__be16 dst_port;
	__u16 udp_len;
	__u16 old_check;
	__u32 pseudo;
	__u32 body;
	__u32 slot;
	__u32 ifindex;
	__u32 length; // payload bytes, as Ferry counts them
};

// The directions, as struct counters and enum stat lay them out: packets then bytes, to
// the peer first.
enum dir {
	TO_PEER = 0,
	FROM_PEER = 2,
};

// csum_headers adds the change of the IP and UDP headers from ip and udp to out's to its
// checksum diffs, and keeps the old checksum.
static __always_inline void csum_headers(struct iphdr *ip, struct udphdr *udp, struct relayed *out)
{
	__be16 new_len = bpf_htons(out->udp_len);
	out->pseudo = csum_word32(out->pseudo, ip->saddr, out->src_ip);
	out->pseudo = csum_word32(out->pseudo, ip->daddr, out->dst_ip);
	out->pseudo = csum_word(out->pseudo, udp->len, new_len);
	out->body = csum_word(out->body, udp->source, out->src_port);
	out->body = csum_word(out->body, udp->dest, out->dst_port);
	out->body = csum_word(out->body, udp->len, new_len);
	out->old_check = udp->check;
}

// send_relayed writes the new IP and UDP headers of a datagram whose payload is in place,
// updates its UDP checksum (a zero one, "no checksum", stays zero), counts it in direction
// d and sends it on.
static __always_inline int send_relayed(struct __sk_buff *skb, const struct relayed *out, enum dir d)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_LEN;
	struct udphdr *udp = data + UDP_OFF;
	if ((void *)(udp + 1) > data_end)
		return TC_ACT_SHOT;
	set_ip(ip, out->src_ip, out->dst_ip, IP_LEN + out->udp_len);
	udp->source = out->src_port;
	udp->dest = out->dst_port;
	udp->len = bpf_htons(out->udp_len);
	if (out->old_check) {
		bpf_l4_csum_replace(skb, CSUM_OFF, 0, csum_fold32(out->pseudo), BPF_F_PSEUDO_HDR | BPF_F_MARK_MANGLED_0);
		bpf_l4_csum_replace(skb, CSUM_OFF, 0, csum_fold32(out->body), BPF_F_MARK_MANGLED_0);
	}
	__u64 *n = bpf_map_lookup_elem(&usage, &out->slot);
	if (n) {
		n[d]++;
		n[d + 1] += out->length;
	}
	count(STAT_TO_PEER_PACKETS + d, 1);
	count(STAT_TO_PEER_BYTES + d, out->length);
	return bpf_redirect_neigh(out->ifindex, NULL, 0, 0);
}

// to_peer relays a ChannelData message from a client to its channel's peer.
static __always_inline int to_peer(struct __sk_buff *skb, __be32 listener, __u32 udp_payload)
{
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	struct iphdr *ip = data + ETH_LEN;
	struct udphdr *udp = data + UDP_OFF;
	__u8 *cd = data + PAYLOAD_OFF;
	if ((void *)(cd + CHANNEL_HEADER) > data_end)
		return FERRY_TCX_NEXT;
	if (udp_payload < CHANNEL_HEADER || (cd[0] & 0xC0) != 0x40)
		return pass(STAT_PASS_STUN);
	__u16 number = ((__u16)cd[0] << 8) | cd[1];
	__u16 length = ((__u16)cd[2] << 8) | cd[3];
	__u32 end = CHANNEL_HEADER + length;
	// As turnwire.ChannelData: the length fits, with at most 3 bytes of padding.
	if (end > udp_payload || udp_payload > ((end + 3) & ~3u) || length > MAX_PAYLOAD)
		return pass(STAT_PASS_MALFORMED);
	__u32 padding = udp_payload - end;
	if (padding) {
		// Zero padding adds nothing to the checksum; any other goes up (and is relayed
		// there).
		__u8 *pad = cd + end;
		if (end > MAX_PAYLOAD + CHANNEL_HEADER || (void *)(pad + 1) > data_end || pad[0])
			return pass(STAT_PASS_MALFORMED);
		if (padding > 1 && ((void *)(pad + 2) > data_end || pad[1]))
			return pass(STAT_PASS_MALFORMED);
		if (padding > 2 && ((void *)(pad + 3) > data_end || pad[2]))
			return pass(STAT_PASS_MALFORMED);
	}

	struct chan_key key = {
		.client_ip = ip->saddr,
		.listener_ip = listener,
		.client_port = udp->source,
		.listener_port = udp->dest,
		.channel = number,
	};
	struct chan_val *v = bpf_map_lookup_elem(&channels, &key);
	if (!v)
		return pass(STAT_PASS_UNBOUND);
	if (bpf_ktime_get_ns() >= v->until)
		return pass(STAT_PASS_EXPIRED);
	struct chan_val c = *v;

	__u32 mtu = 0;
	__s32 diff = -(__s32)(CHANNEL_HEADER + padding);
	if (bpf_check_mtu(skb, c.ifindex, &mtu, diff, 0) != BPF_MTU_CHK_RET_SUCCESS)
		return pass(STAT_PASS_MTU);

	// The UDP checksum's changes: the headers and, in the data, the channel header that
	// goes; the payload moves by 4 bytes, which keeps its sum.
	struct relayed out = {
		.src_ip = c.relay_ip,
		.dst_ip = c.peer_ip,
		.src_port = c.relay_port,
		.dst_port = c.peer_port,
		.udp_len = sizeof(struct udphdr) + length,
		.slot = c.slot,
		.ifindex = c.ifindex,
		.length = length,
	};
	csum_headers(ip, udp, &out);
	out.body = csum_word(out.body, *(__u16 *)cd, 0);
	out.body = csum_word(out.body, *(__u16 *)(cd + 2), 0);

	if (move_down(skb, length) < 0)
		return pass(STAT_PASS_MALFORMED);
	if (bpf_skb_change_tail(skb, PAYLOAD_OFF + length, 0) < 0)
		return pass(STAT_PASS_MALFORMED);
	return send_relayed(skb, &out, TO_PEER);
}

// to_client relays a peer's datagram to the client of its channel as ChannelData.
static __always_inline int to_client(struct __sk_buff *skb, struct peer_val *v, __u32 length)
{
	void *data = (void *)(long)skb->data;
	struct iphdr *ip = data + ETH_LEN;
	struct udphdr *udp = data + UDP_OFF;
	void *data_end = (void *)(long)skb->data_end;
	if ((void *)(udp + 1) > data_end)
		return FERRY_TCX_NEXT;
	if (v->relay_bound ? v->relay_bound != ip->daddr : !bpf_map_lookup_elem(&locals, &ip->daddr))
		return FERRY_TCX_NEXT;
	if (bpf_ktime_get_ns() >= v->until)
		return pass(STAT_PASS_EXPIRED);
	if (length > MAX_PAYLOAD)
		return pass(STAT_PASS_MALFORMED);
	struct peer_val c = *v;

	__u32 mtu = 0;
	if (bpf_check_mtu(skb, c.ifindex, &mtu, CHANNEL_HEADER, 0) != BPF_MTU_CHK_RET_SUCCESS)
		return pass(STAT_PASS_MTU);

	struct relayed out = {
		.src_ip = c.listener_ip,
		.dst_ip = c.client_ip,
		.src_port = c.listener_port,
		.dst_port = c.client_port,
		.udp_len = sizeof(struct udphdr) + CHANNEL_HEADER + length,
		.slot = c.slot,
		.ifindex = c.ifindex,
		.length = length,
	};
	__be16 hdr[2] = {bpf_htons(c.channel), bpf_htons(length)};
	csum_headers(ip, udp, &out);
	out.body = csum_word(out.body, 0, hdr[0]);
	out.body = csum_word(out.body, 0, hdr[1]);

	if (bpf_skb_change_tail(skb, PAYLOAD_OFF + CHANNEL_HEADER + length, 0) < 0)
		return pass(STAT_PASS_MALFORMED);
	if (move_up(skb, length) < 0)
		return pass(STAT_PASS_MALFORMED);
	data = (void *)(long)skb->data;
	data_end = (void *)(long)skb->data_end;
	__be16 *cd = data + PAYLOAD_OFF;
	if ((void *)(cd + 2) > data_end)
		return TC_ACT_SHOT;
	cd[0] = hdr[0];
	cd[1] = hdr[1];
	return send_relayed(skb, &out, FROM_PEER);
}

SEC("tc")
int ferry_ingress(struct __sk_buff *skb)
{
	if (skb->protocol != bpf_htons(ETH_P_IP) || skb->gso_size)
		return FERRY_TCX_NEXT;
	void *data = (void *)(long)skb->data;
	void *data_end = (void *)(long)skb->data_end;
	if (data + PAYLOAD_OFF + CHANNEL_HEADER > data_end) {
		__u32 want = skb->len < PAYLOAD_OFF + CHANNEL_HEADER ? skb->len : PAYLOAD_OFF + CHANNEL_HEADER;
		if (skb->len < PAYLOAD_OFF || bpf_skb_pull_data(skb, want) < 0)
			return FERRY_TCX_NEXT;
		data = (void *)(long)skb->data;
		data_end = (void *)(long)skb->data_end;
		if (data + PAYLOAD_OFF > data_end)
			return FERRY_TCX_NEXT;
	}
	struct ethhdr *eth = data;
	struct iphdr *ip = data + ETH_LEN;
	struct udphdr *udp = data + UDP_OFF;
	if (eth->h_proto != bpf_htons(ETH_P_IP) || ip->version != 4 || ip->ihl != 5 ||
	    ip->protocol != IPPROTO_UDP || (ip->frag_off & bpf_htons(IP_MF_OFFSET)))
		return FERRY_TCX_NEXT;
	__u32 tot_len = bpf_ntohs(ip->tot_len), udp_len = bpf_ntohs(udp->len);
	// Exactly one UDP datagram: no link-layer trailer, no lengths that disagree.
	if (skb->len != ETH_LEN + tot_len || udp_len != tot_len - IP_LEN || udp_len < sizeof(struct udphdr))
		return FERRY_TCX_NEXT;
	__u32 udp_payload = udp_len - sizeof(struct udphdr);

	__be32 listener;
	int is_listener = lookup_listener(ip->daddr, udp->dest, &listener);
	struct peer_val *pv = 0;
	if (!is_listener) {
		struct peer_key pk = {.peer_ip = ip->saddr, .peer_port = udp->source, .relay_port = udp->dest};
		pv = bpf_map_lookup_elem(&peers, &pk);
		if (!pv)
			return FERRY_TCX_NEXT;
	}
	// The whole datagram in the linear part, for direct access.
	if ((long)skb->data_end - (long)skb->data < skb->len) {
		if (bpf_skb_pull_data(skb, skb->len) < 0)
			return FERRY_TCX_NEXT;
	}
	if (is_listener)
		return to_peer(skb, listener, udp_payload);
	return to_client(skb, pv, udp_payload);
}

char __license[] SEC("license") = "Dual MIT/GPL";
