package main

import (
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"golang.org/x/sys/unix"
)

// inNetns runs f on a thread in the named network namespace (ip netns), where the sockets
// it opens and the interfaces it names belong; "" is this program's own.
func inNetns(name string, f func() error) error {
	if name == "" {
		return f()
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	own, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer own.Close()
	ns, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		return err
	}
	defer ns.Close()
	if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", name, err)
	}
	defer func() {
		if err := unix.Setns(int(own.Fd()), unix.CLONE_NEWNET); err != nil {
			panic(err) // a thread left in the wrong namespace must not serve other goroutines
		}
	}()
	return f()
}

// sink counts the UDP datagrams that reach an interface and drops them at its TC ingress
// hook, before the IP layer: the load's side receives the relayed messages at the least
// cost there is, so that its core is not what limits the rate.
type sink struct {
	counts *ebpf.Map
	prog   *ebpf.Program
	link   link.Link
}

// nativeIPv4 is the EtherType of IPv4 (network order) as a load from a packet or from
// skb->protocol reads it.
var nativeIPv4 = binary.NativeEndian.Uint16([]byte{0x08, 0x00})

// tcx return codes.
const (
	tcxNext = -1
	tcxDrop = 2
)

func newSink(netns, dev string) (*sink, error) {
	s := &sink{}
	var err error
	s.counts, err = ebpf.NewMap(&ebpf.MapSpec{Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("sink map: %w", err)
	}
	s.prog, err = ebpf.NewProgram(&ebpf.ProgramSpec{
		Type:    ebpf.SchedCLS,
		License: "MIT",
		Instructions: asm.Instructions{
			asm.Mov.Reg(asm.R6, asm.R1),
			asm.LoadMem(asm.R2, asm.R6, 16, asm.Word), // skb->protocol
			asm.JNE.Imm(asm.R2, int32(nativeIPv4), "next"),
			asm.LoadMem(asm.R2, asm.R6, 76, asm.Word), // skb->data
			asm.LoadMem(asm.R3, asm.R6, 80, asm.Word), // skb->data_end
			asm.Mov.Reg(asm.R4, asm.R2),
			asm.Add.Imm(asm.R4, 24),
			asm.JGT.Reg(asm.R4, asm.R3, "next"),
			asm.LoadMem(asm.R4, asm.R2, 23, asm.Byte), // the IPv4 protocol
			asm.JNE.Imm(asm.R4, 17, "next"),
			asm.StoreImm(asm.RFP, -4, 0, asm.Word),
			asm.LoadMapPtr(asm.R1, s.counts.FD()),
			asm.Mov.Reg(asm.R2, asm.RFP),
			asm.Add.Imm(asm.R2, -4),
			asm.FnMapLookupElem.Call(),
			asm.JEq.Imm(asm.R0, 0, "drop"),
			asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
			asm.Add.Imm(asm.R1, 1),
			asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
			asm.Mov.Imm(asm.R0, tcxDrop).WithSymbol("drop"),
			asm.Return(),
			asm.Mov.Imm(asm.R0, tcxNext).WithSymbol("next"),
			asm.Return(),
		},
	})
	if err != nil {
		s.close()
		return nil, fmt.Errorf("sink program: %w", err)
	}
	err = inNetns(netns, func() error {
		ifc, err := net.InterfaceByName(dev)
		if err != nil {
			return err
		}
		s.link, err = link.AttachTCX(link.TCXOptions{Interface: ifc.Index, Program: s.prog, Attach: ebpf.AttachTCXIngress})
		return err
	})
	if err != nil {
		s.close()
		return nil, fmt.Errorf("sink on %s: %w", dev, err)
	}
	return s, nil
}

// count is the datagrams dropped so far.
func (s *sink) count() (uint64, error) {
	var per []uint64
	if err := s.counts.Lookup(uint32(0), &per); err != nil {
		return 0, err
	}
	var n uint64
	for _, v := range per {
		n += v
	}
	return n, nil
}

func (s *sink) close() {
	if s.link != nil {
		_ = s.link.Close()
	}
	if s.prog != nil {
		_ = s.prog.Close()
	}
	if s.counts != nil {
		_ = s.counts.Close()
	}
}
