// Package offload is Ferry's kernel fast path: an eBPF program at the TC (tcx) ingress hook
// of the interfaces clients and peers reach Ferry on relays ChannelData of UDP clients
// with IPv4 UDP relays, both ways, without a trip through user space (bpf/relay.c). The
// turnserver's allocation table drives its maps: an allocation's channels enter them when
// it publishes a new snapshot of its permissions and channels (after a ChannelBind passed
// every check), and leave when it publishes one without them (expiry, a reload that denies
// the peer) or ends (Refresh 0, expiry, kill, drain, stop). Each entry carries the moment
// its channel or permission runs out, past which the kernel sends the packet up, so the
// sweep's lag never lets a binding outlive its lifetime.
//
// Everything the program does not relay goes up to user space unchanged, where Ferry's own
// data plane handles it; when the program cannot be loaded (no CAP_BPF and CAP_NET_ADMIN,
// a kernel without tcx) Ferry relays everything in user space.
package offload

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/ferry-rtc/ferry/relay"
)

// Config says where the program goes and what it serves.
type Config struct {
	// Interfaces are the names of the interfaces to attach to; none: those that hold the
	// listener and relay addresses (every up, non-loopback Ethernet interface with an IPv4
	// address for a wildcard one).
	Interfaces []string
	// Listeners are the bound addresses of the UDP listeners.
	Listeners []netip.AddrPort
	// RelayBind is the address IPv4 relay sockets bind to (0.0.0.0: every address).
	RelayBind netip.Addr
	// MinPort and MaxPort are the relay port pool's range.
	MinPort, MaxPort int
}

// Offload is the loaded and attached program and its maps.
type Offload struct {
	objs   relayObjects
	links  []link.Link
	names  []string
	owners map[netip.Addr]int // IPv4 addresses of the attached interfaces → ifindex
	min    int
	ncpu   int

	mu       sync.Mutex // map updates and the count of channel entries
	channels int

	mapErrors atomic.Uint64
	skipped   [skipKinds]atomic.Uint64
	closed    atomic.Bool
}

// Why a channel stays in user space, for ferry_offload_skipped_total.
const (
	skipRoute  = iota // its peer or client is not reached through an attached interface
	skipFamily        // IPv6 (the program relays IPv4 only)
	skipKinds
)

var skipLabels = [skipKinds]string{"route", "ipv6"}

// ErrNothingToAttach is Open's error when no interface qualifies: the listeners and relays
// are on loopback, where everything is local and nothing can be relayed in the kernel.
var ErrNothingToAttach = errors.New("no interface to attach to: the UDP listeners and the relay address are on loopback or on no Ethernet interface")

// Open loads the program, sizes its maps, fills the listener and local-address maps and
// attaches the program to the interfaces. The error says why the kernel cannot take the
// fast path (capabilities, kernel version, interfaces); nothing stays loaded then.
func Open(cfg Config) (*Offload, error) {
	ifaces, err := pickInterfaces(cfg)
	if err != nil {
		return nil, err
	}
	// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK.
	_ = rlimit.RemoveMemlock()
	spec, err := loadRelay()
	if err != nil {
		return nil, err
	}
	spec.Maps[relayMapUsage].MaxEntries = uint32(cfg.MaxPort - cfg.MinPort + 1)
	o := &Offload{min: cfg.MinPort, owners: map[netip.Addr]int{}}
	if err := spec.LoadAndAssign(&o.objs, nil); err != nil {
		return nil, explain("load the eBPF program", err)
	}
	if o.ncpu, err = ebpf.PossibleCPU(); err != nil {
		_ = o.objs.Close()
		return nil, err
	}
	if err := o.fill(cfg, ifaces); err != nil {
		_ = o.objs.Close()
		return nil, err
	}
	for _, ifc := range ifaces {
		l, err := link.AttachTCX(link.TCXOptions{
			Interface: ifc.Index,
			Program:   o.objs.FerryIngress,
			Attach:    ebpf.AttachTCXIngress,
		})
		if err != nil {
			_ = o.Close()
			return nil, explain("attach to "+ifc.Name+" (tcx ingress)", err)
		}
		o.links = append(o.links, l)
		o.names = append(o.names, ifc.Name)
	}
	return o, nil
}

// explain turns a load or attach error into what an operator can act on.
func explain(what string, err error) error {
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		return fmt.Errorf("cannot %s: not permitted (it needs CAP_BPF and CAP_NET_ADMIN, or root): %w", what, err)
	case errors.Is(err, ebpf.ErrNotSupported) || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOTSUP):
		return fmt.Errorf("cannot %s: the kernel does not support it (tcx needs Linux 6.6 or later): %w", what, err)
	}
	return fmt.Errorf("cannot %s: %w", what, err)
}

// pickInterfaces returns the interfaces cfg names, or those that hold its addresses.
func pickInterfaces(cfg Config) ([]net.Interface, error) {
	all, err := net.Interfaces()
	if err != nil {
		return nil, fmt.Errorf("list interfaces: %w", err)
	}
	if len(cfg.Interfaces) > 0 {
		var out []net.Interface
		for _, name := range cfg.Interfaces {
			i := slices.IndexFunc(all, func(ifc net.Interface) bool { return ifc.Name == name })
			if i < 0 {
				return nil, fmt.Errorf("interface %q does not exist", name)
			}
			if !ethernet(all[i]) {
				return nil, fmt.Errorf("interface %q is not an Ethernet interface", name)
			}
			out = append(out, all[i])
		}
		return out, nil
	}
	wildcard := cfg.RelayBind.IsUnspecified()
	want := map[netip.Addr]bool{cfg.RelayBind: true}
	for _, l := range cfg.Listeners {
		if l.Addr().Is4() {
			wildcard = wildcard || l.Addr().IsUnspecified()
			want[l.Addr()] = true
		}
	}
	var out []net.Interface
	for _, ifc := range all {
		if ifc.Flags&net.FlagUp == 0 || ifc.Flags&net.FlagLoopback != 0 || !ethernet(ifc) {
			continue
		}
		for _, ip := range ipv4Addrs(ifc) {
			if wildcard || want[ip] {
				out = append(out, ifc)
				break
			}
		}
	}
	if len(out) == 0 {
		return nil, ErrNothingToAttach
	}
	return out, nil
}

// ethernet reports whether ifc has Ethernet framing (ARPHRD_ETHER), which the program
// parses: veth, bridges, bonds and physical NICs, not tunnels.
func ethernet(ifc net.Interface) bool {
	b, err := os.ReadFile("/sys/class/net/" + ifc.Name + "/type")
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

func ipv4Addrs(ifc net.Interface) []netip.Addr {
	addrs, err := ifc.Addrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
			out = append(out, p.Addr())
		}
	}
	return out
}

// fill writes the listeners and the attached interfaces' addresses into their maps.
func (o *Offload) fill(cfg Config, ifaces []net.Interface) error {
	for _, l := range cfg.Listeners {
		if !l.Addr().Is4() {
			continue
		}
		k := relayListenerKey{Ip: ip4(l.Addr()), Port: port16(l.Port())}
		if err := o.objs.Listeners.Put(k, uint8(1)); err != nil {
			return fmt.Errorf("listener map: %w", err)
		}
	}
	for _, ifc := range ifaces {
		for _, ip := range ipv4Addrs(ifc) {
			o.owners[ip] = ifc.Index
			if err := o.objs.Locals.Put(ip4(ip), uint8(1)); err != nil {
				return fmt.Errorf("local address map: %w", err)
			}
		}
	}
	return nil
}

// Interfaces names the interfaces the program is attached to.
func (o *Offload) Interfaces() []string { return slices.Clone(o.names) }

// Close detaches the program and frees its maps: the kernel relays nothing more. An
// exiting process gets the same from the kernel, which owns the links through its file
// descriptors, so a crashed Ferry leaves no relaying behind.
func (o *Offload) Close() error {
	if o.closed.Swap(true) {
		return nil
	}
	var errs []error
	for _, l := range o.links {
		errs = append(errs, l.Close())
	}
	errs = append(errs, o.objs.Close())
	return errors.Join(errs...)
}

// ip4 is an IPv4 address as the program keeps it: its network-order bytes in a uint32.
func ip4(a netip.Addr) uint32 {
	b := a.Unmap().As4()
	return binary.NativeEndian.Uint32(b[:])
}

// port16 is a port in network order, as the program keeps it.
func port16(p uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], p)
	return binary.NativeEndian.Uint16(b[:])
}

// route is how the kernel sends to an address: from src, out of ifindex.
type route struct {
	src     netip.Addr
	ifindex int
}

// routeTo asks the kernel which source address it sends to dst from, as a socket that is
// not bound to an address would (a UDP socket connected to dst sends nothing), and finds
// the attached interface that holds it. ok is false when dst is not reached through an
// attached interface (a local address, another interface).
func (o *Offload) routeTo(dst netip.Addr) (route, bool) {
	c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 9)))
	if err != nil {
		return route{}, false
	}
	src := c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
	_ = c.Close()
	ifindex, ok := o.owners[src]
	if !ok || src == dst {
		return route{}, false
	}
	return route{src: src, ifindex: ifindex}, true
}

// sendsFrom reports the route to dst if a socket bound to bound (unspecified: any address)
// would take it: a socket bound to an address sends from that address, and the kernel's
// choice of route for an unbound one must agree.
func (o *Offload) sendsFrom(bound, dst netip.Addr) (route, bool) {
	r, ok := o.routeTo(dst)
	if !ok || (!bound.IsUnspecified() && bound != r.src) {
		return route{}, false
	}
	return r, true
}

// monoNow is CLOCK_MONOTONIC, the program's clock (bpf_ktime_get_ns).
func monoNow() int64 {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	return ts.Nano()
}

// monoAt converts a wall-clock deadline into the program's clock.
func monoAt(t time.Time, now time.Time, mono int64) uint64 {
	d := t.Sub(now)
	if d <= 0 {
		return 0
	}
	return uint64(mono + int64(d))
}

// usageOf sums the per-CPU counters of a slot.
func (o *Offload) usageOf(slot uint32) relay.Usage {
	var per []relayCounters
	if err := o.objs.Usage.Lookup(slot, &per); err != nil {
		return relay.Usage{}
	}
	var u relay.Usage
	for _, c := range per {
		u.ToPeerPackets += c.ToPeerPackets
		u.ToPeerBytes += c.ToPeerBytes
		u.FromPeerPackets += c.FromPeerPackets
		u.FromPeerBytes += c.FromPeerBytes
	}
	return u
}

// zero clears a slot's counters.
func (o *Offload) zero(slot uint32) {
	_ = o.objs.Usage.Put(slot, make([]relayCounters, o.ncpu))
}

// Stats are the program's global counters.
type Stats struct {
	ToPeerPackets, ToPeerBytes, FromPeerPackets, FromPeerBytes uint64
	Passed                                                     [passKinds]uint64
}

// The reasons a packet to a listener or relay goes up, in the order of relay.c's enum
// stat after the four traffic counters.
const (
	passSTUN = iota
	passUnbound
	passExpired
	passMalformed
	passMTU
	passKinds
)

var passLabels = [passKinds]string{"stun", "unbound", "expired", "malformed", "mtu"}

// Stats reads the program's global counters.
func (o *Offload) Stats() Stats {
	var s Stats
	read := func(i uint32) uint64 {
		var per []uint64
		if err := o.objs.Stats.Lookup(i, &per); err != nil {
			return 0
		}
		var sum uint64
		for _, v := range per {
			sum += v
		}
		return sum
	}
	s.ToPeerPackets, s.ToPeerBytes = read(0), read(1)
	s.FromPeerPackets, s.FromPeerBytes = read(2), read(3)
	for i := range s.Passed {
		s.Passed[i] = read(uint32(4 + i))
	}
	return s
}

// Channels is the number of channels the kernel relays.
func (o *Offload) Channels() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.channels
}
