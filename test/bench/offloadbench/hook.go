package main

// TC or XDP: what the hook alone costs on veth. The relay program's own work (parse,
// look up, rewrite) would be the same at either hook; what differs is the way in and out.
// So both hooks get the same minimal program, which sends every IPv4 UDP datagram that
// reaches s0 out of s1 unchanged (bpf_redirect; ARP and the rest pass), and the load sends
// paced datagrams from the client side through it to the sink on p0:
//
//   - tc:  the program at s0's tcx ingress (where Ferry's program runs); RPS hands s0's
//     receive to the server's core, as in the other measurements;
//   - xdp: the program as s0's native XDP program; a veth delivers XDP_REDIRECT frames
//     only to a peer that runs NAPI, so p0 gets an XDP program that passes everything
//     (without it the redirected frames are dropped: that is measured too, as loss).
//
// The figure is all cores' busy time per datagram at the same rate less other processes'
// time, sender and sink included (they are the same in both), and where that time was
// spent.

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
)

type hookStep struct {
	hook       string
	peerXDP    bool // p0 has an XDP program (NAPI)
	rps        bool // s0's receive goes to the server's core (else it stays on the sender's)
	rate       int
	round      int
	sent, recv uint64
	u          usage
}

func (s hookStep) lossPct() float64 {
	if s.sent == 0 {
		return 100
	}
	return 100 * float64(int64(s.sent)-int64(s.recv)) / float64(s.sent)
}

// perMsg is all cores' busy µs per datagram sent, less other processes.
func (s hookStep) perMsg() float64 { return (sum(s.u.busy) - s.u.otherAll) / float64(s.sent) * 1e6 }

// hookVariants are the hook set-ups, in the order they take turns.
var hookVariants = []struct {
	hook         string
	peerXDP, rps bool
}{{"tc", false, true}, {"tc", false, false}, {"xdp", true, false}, {"xdp", false, false}}

func (b *bench) hookRounds() error {
	var mac [2]net.HardwareAddr // c0, s0
	for i, d := range []struct{ ns, dev string }{{"", "c0"}, {"srv", "s0"}} {
		var err error
		if mac[i], err = macOf(d.ns, d.dev); err != nil {
			return err
		}
	}
	var frames [][]byte
	for i := range b.o.rateConns {
		from := netip.AddrPortFrom(netip.MustParseAddr(cliIP), uint16(20000+i))
		frames = append(frames, udpFrame(mac[0], mac[1], from, netip.MustParseAddrPort(srvIP+":3478"), make([]byte, 4+b.o.sizes[0])))
	}
	out, err := newFrameSender("", "c0", frames)
	if err != nil {
		return err
	}
	defer out.close()
	f := flow{out: out}
	sk, err := newSink("peer", "p0")
	if err != nil {
		return err
	}
	defer sk.close()
	for round := 1; round <= b.o.rounds; round++ {
		for _, v := range hookVariants {
			for _, rate := range b.o.hookRates {
				st, err := b.hookStep(&f, sk, v.hook, v.peerXDP, v.rps, rate)
				if err != nil {
					return fmt.Errorf("hook %s: %w", v.hook, err)
				}
				st.round = round
				u := st.u
				fmt.Fprintf(os.Stderr, "hook round %d %-3s peer XDP %-5v RPS %-5v %7d/s: sent %d recv %d loss %6.2f%% all cores %.2f µs/datagram (server core busy %3.0f%%, load core busy %3.0f%%)\n",
					round, v.hook, v.peerXDP, v.rps, rate, st.sent, st.recv, st.lossPct(), st.perMsg(),
					100*u.busy[b.o.serverCPU]/u.wall, 100*u.busy[b.o.loadCPU]/u.wall)
				b.hook = append(b.hook, st)
			}
		}
	}
	return nil
}

// hookStep attaches the forwarder at one hook, warms up, then sends at rate for rateStep.
func (b *bench) hookStep(f *flow, sk *sink, hook string, peerXDP, rps bool, rate int) (hookStep, error) {
	st := hookStep{hook: hook, peerXDP: peerXDP, rps: rps, rate: rate}
	var closers []func()
	defer func() {
		for _, c := range closers {
			c()
		}
	}()
	if !rps {
		if err := setRPS("srv", "/sys", "s0", "0"); err != nil {
			return st, err
		}
		closers = append(closers, func() { _ = setRPS("srv", "/sys", "s0", mask(b.o.serverCPU)) })
	}
	var s1 int
	if err := inNetns("srv", func() error {
		ifc, err := net.InterfaceByName("s1")
		if err == nil {
			s1 = ifc.Index
		}
		return err
	}); err != nil {
		return st, err
	}
	fwd, err := forwarder(hook, s1)
	if err != nil {
		return st, err
	}
	closers = append(closers, func() { _ = fwd.Close() })
	l, err := attach("srv", "s0", hook, fwd)
	if err != nil {
		return st, err
	}
	closers = append(closers, func() { _ = l.Close() })
	if peerXDP {
		pass, err := xdpPass()
		if err != nil {
			return st, err
		}
		closers = append(closers, func() { _ = pass.Close() })
		pl, err := attach("peer", "p0", "xdp", pass)
		if err != nil {
			return st, err
		}
		closers = append(closers, func() { _ = pl.Close() })
	}
	if err := f.run(float64(rate), time.Now().Add(300*time.Millisecond)); err != nil { // neighbours, pages
		return st, err
	}
	b.acct.waitQuiet()
	c0, err := sk.count()
	if err != nil {
		return st, err
	}
	r0, err := b.acct.read()
	if err != nil {
		return st, err
	}
	f.sent = 0
	if err := f.run(float64(rate), time.Now().Add(b.o.rateStep)); err != nil {
		return st, err
	}
	r1, err := b.acct.read()
	if err != nil {
		return st, err
	}
	time.Sleep(200 * time.Millisecond) // what is still in flight
	c1, err := sk.count()
	if err != nil {
		return st, err
	}
	st.sent, st.recv, st.u = uint64(f.sent), c1-c0, b.acct.window(r0, r1)
	return st, nil
}

// forwarder is the minimal program: IPv4 UDP out of ifindex, the rest passed on.
func forwarder(hook string, ifindex int) (*ebpf.Program, error) {
	typ, data, end, pass := ebpf.SchedCLS, int16(76), int16(80), int32(tcxNext) // __sk_buff
	if hook == "xdp" {
		typ, data, end, pass = ebpf.XDP, 0, 4, 2 // xdp_md, XDP_PASS
	}
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    typ,
		License: "MIT",
		Instructions: asm.Instructions{
			asm.LoadMem(asm.R2, asm.R1, data, asm.Word),
			asm.LoadMem(asm.R3, asm.R1, end, asm.Word),
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, 24),
			asm.JGT.Reg(asm.R4, asm.R3, "pass"),
			asm.LoadMem(asm.R4, asm.R2, 12, asm.Half), // EtherType, network order
			asm.JNE.Imm(asm.R4, int32(nativeIPv4), "pass"),
			asm.LoadMem(asm.R4, asm.R2, 23, asm.Byte), // the IPv4 protocol
			asm.JNE.Imm(asm.R4, 17, "pass"),
			asm.Mov.Imm(asm.R1, int32(ifindex)),
			asm.Mov.Imm(asm.R2, 0),
			asm.FnRedirect.Call(),
			asm.Return(),
			asm.Mov.Imm(asm.R0, pass).WithSymbol("pass"),
			asm.Return(),
		},
	})
}

// xdpPass passes everything: on a veth it turns NAPI on, which XDP_REDIRECT into its peer
// needs.
func xdpPass() (*ebpf.Program, error) {
	return ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:         ebpf.XDP,
		License:      "MIT",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
}

// attach links a program at a hook of an interface in a namespace.
func attach(netns, dev, hook string, p *ebpf.Program) (link.Link, error) {
	var l link.Link
	err := inNetns(netns, func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		if hook == "xdp" {
			l, err = link.AttachXDP(link.XDPOptions{Program: p, Interface: ifc.Index, Flags: link.XDPDriverMode})
		} else {
			l, err = link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: p, Attach: ebpf.AttachTCXIngress})
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s on %s: %w", hook, dev, err)
	}
	return l, nil
}
