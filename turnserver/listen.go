package turnserver

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"github.com/pion/dtls/v3"

	"github.com/ferry-rtc/ferry/internal/pionlog"
)

var errUnknownProto = errors.New("turnserver: unknown listener proto")

// open binds one listener: a guarded packet conn for udp, a guarded stream listener for the
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
		pc, err := net.ListenUDP("udp"+family, net.UDPAddrFromAddrPort(l.Addr))
		if err != nil {
			return nil, nil, err
		}
		return &packetConn{PacketConn: pc, guard: s.guard}, nil, nil
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
		ln, err := dtls.ListenWithOptions("udp"+family, net.UDPAddrFromAddrPort(l.Addr),
			dtls.WithGetCertificate(func(*dtls.ClientHelloInfo) (*tls.Certificate, error) { return getCert() }),
			dtls.WithLoggerFactory(pionlog.Factory{Log: s.log}))
		if err != nil {
			return nil, nil, err
		}
		return nil, newStreamListener(ln, s.guard, s.log), nil
	}
	return nil, nil, fmt.Errorf("%w %q", errUnknownProto, l.Proto)
}
