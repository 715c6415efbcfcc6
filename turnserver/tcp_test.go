package turnserver

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/pion/stun/v4"

	"github.com/ferry-rtc/ferry/internal/testkit"
)

// TestConnect: an RFC 6062 Connect (section 5.2) is 400 on a UDP allocation or without a
// peer, 403 for a denied peer, 443 for one of another family, 446 for a peer connected
// already, 447 when the peer refuses, 508 past Limits.ConnectionsPerAllocation; success
// carries CONNECTION-ID.
func TestConnect(t *testing.T) {
	s := newTestServer(t, 27095, 27109, withLimits(Limits{ConnectionsPerAllocation: 2}))
	ctl := newClient(t, s, "tcp")
	ctl.want(t, 0, stun.MethodAllocate, tcpTransport)
	onUDP := newClient(t, s, "tcp")
	onUDP.allocate(t)
	first, second, third := tcpPeer(t), tcpPeer(t), tcpPeer(t)
	for _, tc := range []struct {
		name  string
		c     *ctlClient
		attrs []stun.Setter
		code  stun.ErrorCode
	}{
		{"UDP allocation", onUDP, []stun.Setter{peerAt(first.Addr())}, stun.CodeBadRequest},
		{"no peer", ctl, nil, stun.CodeBadRequest},
		{"two peers", ctl, []stun.Setter{peerAt(first.Addr()), peerAt(second.Addr())}, stun.CodeBadRequest},
		{"denied peer", ctl, []stun.Setter{peer("10.0.0.1:80")}, stun.CodeForbidden},
		{"IPv6 peer on an IPv4 allocation", ctl, []stun.Setter{peer("[::1]:80")}, stun.CodePeerAddrFamilyMismatch},
		{"first peer", ctl, []stun.Setter{peerAt(first.Addr())}, 0},
		{"first peer again", ctl, []stun.Setter{peerAt(first.Addr())}, stun.CodeConnAlreadyExists},
		{"closed port", ctl, []stun.Setter{testkit.PeerAddr(closedPort(t))}, stun.CodeConnTimeoutOrFailure},
		{"second peer", ctl, []stun.Setter{peerAt(second.Addr())}, 0},
		{"third peer", ctl, []stun.Setter{peerAt(third.Addr())}, stun.CodeInsufficientCapacity},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := tc.c.want(t, tc.code, stun.MethodConnect, tc.attrs...)
			if v, err := resp.Get(stun.AttrConnectionID); tc.code == 0 && (err != nil || len(v) != 4) {
				t.Fatalf("Connect succeeded without a CONNECTION-ID: %v", resp)
			}
		})
	}
}

// TestConnectOwnRelayAddress: Ferry's own relay IP, which the policy denies, is a peer only
// at a port Ferry holds for TCP: a port held by a UDP relay is 403, a TCP relay's is fine.
func TestConnectOwnRelayAddress(t *testing.T) {
	s := newTestServer(t, 27110, 27119, allowOnly(t, "127.0.0.2/32"))
	udpRelay := newClient(t, s, "udp").allocate(t)
	other := newClient(t, s, "tcp")
	tcpRelay := relayed(t, other.want(t, 0, stun.MethodAllocate, tcpTransport))[0]
	ctl := newClient(t, s, "tcp")
	ctl.want(t, 0, stun.MethodAllocate, tcpTransport)
	ctl.want(t, stun.CodeForbidden, stun.MethodConnect, testkit.PeerAddr(udpRelay))
	ctl.want(t, 0, stun.MethodConnect, testkit.PeerAddr(tcpRelay))
}

// TestConnectionBind: a ConnectionBind (RFC 6062 section 5.4) is 400 without
// CONNECTION-ID, for an unknown one, over UDP or on a connection that has an allocation, and
// 441 from another user; then the data connection and the peer's pipe bytes both ways,
// counted as the allocation's traffic.
func TestConnectionBind(t *testing.T) {
	s := newTestServer(t, 27120, 27129)
	ctl := newClient(t, s, "tcp")
	ctl.want(t, 0, stun.MethodAllocate, tcpTransport)
	ln := tcpPeer(t)
	resp := ctl.want(t, 0, stun.MethodConnect, peerAt(ln.Addr()))
	id, err := resp.Get(stun.AttrConnectionID)
	if err != nil {
		t.Fatal(err)
	}
	peerConn := accept(t, ln)
	known := testkit.Attr(stun.AttrConnectionID, id)
	data := newClient(t, s, "tcp")
	for _, tc := range []struct {
		name  string
		c     *ctlClient
		attrs []stun.Setter
		code  stun.ErrorCode
	}{
		{"no CONNECTION-ID", data, nil, stun.CodeBadRequest},
		{"unknown CONNECTION-ID", data, []stun.Setter{testkit.Attr(stun.AttrConnectionID, []byte{^id[0], id[1], id[2], id[3]})}, stun.CodeBadRequest},
		{"over UDP", newClient(t, s, "udp"), []stun.Setter{known}, stun.CodeBadRequest},
		{"on the control connection", ctl, []stun.Setter{known}, stun.CodeBadRequest},
		{"another user's connection", newClient(t, s, "tcp").as(restUser("bob")), []stun.Setter{known}, stun.CodeWrongCredentials},
		{"bound", data, []stun.Setter{known}, 0},
		{"bound already", newClient(t, s, "tcp"), []stun.Setter{known}, stun.CodeBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.c.want(t, tc.code, stun.MethodConnectionBind, tc.attrs...) })
	}

	mustWrite(t, data.conn, []byte("to the peer"))
	expectStream(t, peerConn, "to the peer")
	mustWrite(t, peerConn, []byte("to the client"))
	expectStream(t, data.conn, "to the client")
	waitFor(t, "the pipe's traffic in the session", func() bool {
		u := sessionOf(t, s, ctl)
		return u.ToPeerBytes == uint64(len("to the peer")) && u.FromPeerBytes == uint64(len("to the client"))
	})
}

// tcpPeer listens for a peer's TCP connections on 127.0.0.1.
func tcpPeer(t *testing.T) *net.TCPListener {
	t.Helper()
	ln, err := net.ListenTCP("tcp4", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	return ln
}

// accept returns the peer's next connection from the relay.
func accept(t *testing.T, ln *net.TCPListener) net.Conn {
	t.Helper()
	_ = ln.SetDeadline(time.Now().Add(readTimeout))
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// closedPort is a TCP port on 127.0.0.1 that nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	ln := tcpPeer(t)
	_ = ln.Close()
	return addrPortOf(ln.Addr())
}

// expectStream reads want from a stream.
func expectStream(t *testing.T, c net.Conn, want string) {
	t.Helper()
	buf := make([]byte, len(want))
	_ = c.SetReadDeadline(time.Now().Add(readTimeout))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != want {
		t.Fatalf("read %q (%v), want %q", buf, err, want)
	}
}

// TestStreamClosedAfterAllocationEnds: a TCP connection whose allocation ends has
// AllocateTimeout to make another, as a new connection has; past it the server closes it.
func TestStreamClosedAfterAllocationEnds(t *testing.T) {
	s := newTestServer(t, 27290, 27294, withLimits(Limits{AllocateTimeout: 200 * time.Millisecond}))
	c := newClient(t, s, "tcp")
	c.allocate(t)
	c.want(t, 0, stun.MethodRefresh, lifetime(0))
	_ = c.conn.SetReadDeadline(time.Now().Add(readTimeout))
	if n, err := c.conn.Read(make([]byte, 64)); !errors.Is(err, io.EOF) {
		t.Fatalf("read %d bytes, %v; want the server to close the connection", n, err)
	}
}
