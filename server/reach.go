package server

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/pion/ice/v4"
	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/conf"
	"github.com/ferry-rtc/ferry/relay"
)

// reachTimeout bounds the wait for the answers from Ferry's advertised addresses. A
// datagram to one of the host's own addresses comes back in well under a millisecond, and
// through a NAT's loop-back in a few; more than this is no answer.
const reachTimeout = 2 * time.Second

// firstRetransmit is the wait before a request is sent again; each wait doubles, as STUN
// retransmissions do (RFC 8489 section 6.2.1), so reachTimeout holds four sends.
const firstRetransmit = 250 * time.Millisecond

// reachTarget is an address Ferry hands out to clients, with the request a client sends
// there.
type reachTarget struct {
	name string // what the address is, for the log
	addr netip.AddrPort
	req  *stun.Message
	key  stun.MessageIntegrity // checks the answer; nil: any answer to req will do
}

func (t reachTarget) String() string { return t.name + " at " + t.addr.String() }

// listenerTargets are the udp listeners at the addresses clients are given (a wildcard
// listener's is the relay's public address of its family), each with a STUN Binding.
func listenerTargets(cfg *conf.Config, v4, v6 relay.Addrs) ([]reachTarget, error) {
	var out []reachTarget
	for i, l := range cfg.Listen {
		addr, ok := advertised(l, v4, v6)
		if l.Proto != "udp" || !ok {
			continue
		}
		req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.Fingerprint)
		if err != nil {
			return nil, err
		}
		out = append(out, reachTarget{name: fmt.Sprintf("listen[%d] (udp)", i), addr: addr, req: req})
	}
	return out, nil
}

// iceTarget is the SFU's ICE address with an ICE connectivity check for the session whose
// offer and answer are given: what a client that reaches the SFU directly sends first. Its
// answer carries MESSAGE-INTEGRITY under the SFU's password, so it cannot come from another
// STUN server at that address. The check's low priority and missing USE-CANDIDATE leave
// the session's own candidate pair chosen.
func iceTarget(addr netip.AddrPort, offer, answer string) (reachTarget, error) {
	sfuUfrag, sfuPwd, ufrag := sdpAttr(answer, "ice-ufrag"), sdpAttr(answer, "ice-pwd"), sdpAttr(offer, "ice-ufrag")
	if sfuUfrag == "" || sfuPwd == "" || ufrag == "" {
		return reachTarget{}, errors.New("the WHIP offer or answer has no ICE credentials")
	}
	var tieBreaker [8]byte
	_, _ = rand.Read(tieBreaker[:])
	key := stun.NewShortTermIntegrity(sfuPwd)
	req, err := stun.Build(stun.TransactionID, stun.BindingRequest, stun.NewUsername(sfuUfrag+":"+ufrag),
		ice.AttrControlling(binary.BigEndian.Uint64(tieBreaker[:])), ice.PriorityAttr(1), key, stun.Fingerprint)
	if err != nil {
		return reachTarget{}, err
	}
	return reachTarget{name: "the SFU's ICE address", addr: addr, req: req, key: key}, nil
}

// sdpAttr is the value of the first a=name: line of an SDP.
func sdpAttr(sdp, name string) string {
	for line := range strings.SplitSeq(sdp, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimRight(line, "\r"), "a="+name+":"); ok {
			return v
		}
	}
	return ""
}

// reach sends every target its request from a UDP socket of this host, as a remote client
// sends it, and waits for the answers, at most reachTimeout. It returns the targets that
// answered and an error naming each that did not.
func reach(ctx context.Context, targets []reachTarget) (reached []string, err error) {
	errs := make([]error, len(targets))
	var wg sync.WaitGroup
	for i, t := range targets {
		wg.Go(func() { errs[i] = probe(ctx, t) })
	}
	wg.Wait()
	for i, t := range targets {
		if errs[i] == nil {
			reached = append(reached, t.String())
		} else {
			errs[i] = fmt.Errorf("%s: %w", t, errs[i])
		}
	}
	return reached, joinErrors(errs...)
}

// joinErrors is errors.Join on one line, for a log attribute: "; " between the errors.
func joinErrors(errs ...error) error {
	var msgs []string
	for _, err := range errs {
		if err != nil {
			msgs = append(msgs, err.Error())
		}
	}
	if len(msgs) == 0 {
		return nil
	}
	return errors.New(strings.Join(msgs, "; "))
}

// probe sends t's request, again after each wait, until the answer comes, reachTimeout
// passes or ctx is done.
func probe(ctx context.Context, t reachTarget) error {
	network := "udp4"
	if t.addr.Addr().Is6() {
		network = "udp6"
	}
	conn, err := net.ListenUDP(network, nil)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() }) // a read in progress ends
	defer stop()
	end := time.Now().Add(reachTimeout)
	buf := make([]byte, 1500)
	for wait := firstRetransmit; ; wait *= 2 {
		if _, err := conn.WriteToUDPAddrPort(t.req.Raw, t.addr); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("this host cannot send there: %w", err)
		}
		next := time.Now().Add(wait)
		if next.After(end) {
			next = end
		}
		if t.answered(conn, buf, next) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !time.Now().Before(end) {
			return fmt.Errorf("no answer within %s", reachTimeout)
		}
	}
}

// answered reads conn until deadline and reports whether the answer to t's request came.
func (t reachTarget) answered(conn *net.UDPConn, buf []byte, deadline time.Time) bool {
	_ = conn.SetReadDeadline(deadline)
	for {
		n, err := conn.Read(buf)
		if err != nil {
			return false
		}
		m := &stun.Message{Raw: append([]byte(nil), buf[:n]...)}
		if m.Decode() != nil || m.Type != stun.BindingSuccess || m.TransactionID != t.req.TransactionID {
			continue
		}
		if t.key == nil || t.key.Check(m) == nil {
			return true
		}
	}
}
