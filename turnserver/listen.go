package turnserver

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"sync/atomic"

	"github.com/pion/dtls/v3"
	"github.com/pion/transport/v4/reuseport"

	"github.com/ferry-rtc/ferry/internal/dtlsgate"
	"github.com/ferry-rtc/ferry/internal/pionlog"
)

var errUnknownProto = errors.New("turnserver: unknown listener proto")

// listenerReadBuffer is the receive buffer asked for each UDP listener socket.
const listenerReadBuffer = 4 << 20

// listenUDP opens a udp listener as one SO_REUSEPORT socket per CPU on the same address:
// the kernel spreads clients over them by their address, and each has a read loop of its
// own, so one listener uses every core (one socket tops out at one core's worth of reads,
// pion/turn#288).
func (s *Server) listenUDP(network string, addr netip.AddrPort) (*packetConn, error) {
	lc := net.ListenConfig{Control: reuseport.Control}
	var socks []*net.UDPConn
	for range runtime.GOMAXPROCS(0) {
		pc, err := lc.ListenPacket(context.Background(), network, addr.String())
		if err != nil {
			for _, c := range socks {
				_ = c.Close()
			}
			return nil, err
		}
		sock := pc.(*net.UDPConn)
		// Every client of the listener shares these sockets' receive buffers (coturn gives
		// each client a connected socket of its own): a burst must not overflow them. The
		// kernel caps the size at net.core.rmem_max.
		_ = sock.SetReadBuffer(listenerReadBuffer)
		socks = append(socks, sock)
		addr = pc.LocalAddr().(*net.UDPAddr).AddrPort() // port 0: the next sockets take the port the first got
	}
	c := newPacketConn(socks, s.guard)
	if err := s.guard.plane.addSocket(c.local, socks[0]); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// open binds one listener: guarded packet conns for udp, a guarded stream listener for the
// others. UDP and DTLS sockets are opened for the address's own family only, so "0.0.0.0"
// and "[::]" listeners on one port can coexist.
func (s *Server) open(l Listener) (net.PacketConn, net.Listener, error) {
	var cert *atomic.Pointer[tls.Certificate]
	if l.Cert != nil {
		cert = &atomic.Pointer[tls.Certificate]{}
		cert.Store(l.Cert)
	}
	s.certs = append(s.certs, cert) // Apply replaces certificates in place
	getCert := func() (*tls.Certificate, error) { return cert.Load(), nil }
	family := "4"
	if l.Addr.Addr().Is6() {
		family = "6"
	}
	switch l.Proto {
	case "udp":
		pc, err := s.listenUDP("udp"+family, l.Addr)
		if err != nil {
			return nil, nil, err
		}
		return pc, nil, nil
	case "tcp":
		ln, err := net.ListenTCP("tcp"+family, net.TCPAddrFromAddrPort(l.Addr))
		if err != nil {
			return nil, nil, err
		}
		return nil, newStreamListener(ln, s.guard, s.log), nil
	case "tls":
		ln, err := net.ListenTCP("tcp"+family, net.TCPAddrFromAddrPort(l.Addr))
		if err != nil {
			return nil, nil, err
		}
		tlsLn := tls.NewListener(ln, &tls.Config{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return getCert() },
			MinVersion:     tls.VersionTLS12,
		})
		return nil, newStreamListener(tlsLn, s.guard, s.log), nil
	case "dtls":
		ln, err := s.listenDTLS("udp"+family, l.Addr, getCert)
		if err != nil {
			return nil, nil, err
		}
		return nil, newStreamListener(ln, s.guard, s.log), nil
	}
	return nil, nil, fmt.Errorf("%w %q", errUnknownProto, l.Proto)
}

// listenDTLS opens a dtls listener: a UDP socket of Ferry's own behind a gate that bounds
// what a ClientHello flood can cost (internal/dtlsgate). It hands on only connections
// whose handshake is done.
func (s *Server) listenDTLS(network string, addr netip.AddrPort, getCert func() (*tls.Certificate, error)) (net.Listener, error) {
	sock, err := net.ListenUDP(network, net.UDPAddrFromAddrPort(addr))
	if err != nil {
		return nil, err
	}
	_ = sock.SetReadBuffer(listenerReadBuffer) // a burst of handshakes must not overflow it
	gate, err := dtlsgate.New(sock, dtlsgate.Config{
		Options: []dtls.ServerOption{
			dtls.WithGetCertificate(func(*dtls.ClientHelloInfo) (*tls.Certificate, error) { return getCert() }),
			dtls.WithLoggerFactory(pionlog.Factory{Log: s.log}),
		},
		Limits:  s.dtlsLimits,
		Timeout: handshakeTimeout,
		Events:  s.meters.dtls,
	})
	if err != nil {
		_ = sock.Close()
		return nil, fmt.Errorf("turnserver: dtls listener on %s: %w", addr, err)
	}
	return gate, nil
}

// dtlsLimits are the caps on DTLS handshakes as the last reload left them.
func (s *Server) dtlsLimits() dtlsgate.Limits {
	l := s.guard.limits.Load()
	return dtlsgate.Limits{Handshakes: l.DTLSHandshakes, HandshakesPerIP: l.DTLSHandshakesPerIP}
}
