package turnserver

import (
	"crypto/rand"
	"errors"
	"sync"
	"time"

	"github.com/ferry-rtc/ferry/internal/udpbatch"
	"github.com/ferry-rtc/ferry/relay"
)

// reservationLifetime is how long a port reserved by EVEN-PORT waits for the Allocate that
// claims it with its RESERVATION-TOKEN (RFC 8656 section 7.2 suggests 30 seconds).
const reservationLifetime = 30 * time.Second

// reservations are the ports EVEN-PORT reserved, each held by a bound socket until claimed
// or expired: only a socket keeps another program off the port.
type reservations struct {
	mu   sync.Mutex
	held map[[8]byte]*reservation
}

type reservation struct {
	conn    *udpbatch.Conn
	port    int
	fam     relay.Addrs
	expires time.Time
}

// newUDPRelay binds a relay for a on a free pool port of fam: any port, or with even an even
// one (RFC 8656 section 7.2, EVEN-PORT), and with reserve then holds the next port too,
// returning its token. A port another program holds is skipped (and put back: it may be
// free later). The caller starts the relay.
func (s *Server) newUDPRelay(a *allocation, fam relay.Addrs, even, reserve bool) (*udpRelay, *[8]byte, error) {
	var lastErr error
	for range s.cfg.Pool.Free() {
		port, ok := s.cfg.Pool.Get(relay.UDP)
		if even {
			port, ok = s.cfg.Pool.GetEven(relay.UDP, reserve)
		}
		if !ok {
			break
		}
		conn, err := bindUDP(fam, port)
		if err != nil {
			s.cfg.Pool.Put(port)
			if reserve {
				s.cfg.Pool.Put(port + 1)
			}
			lastErr = err
			continue
		}
		rl := s.relayOn(a, conn, port, fam.Public)
		if !reserve {
			return rl, nil, nil
		}
		token, err := s.reserved.hold(fam, port+1)
		if err != nil {
			rl.close()
			s.cfg.Pool.Put(port + 1)
			lastErr = err
			continue
		}
		return rl, &token, nil
	}
	return nil, nil, errors.Join(relay.ErrPoolExhausted, lastErr)
}

// bindUDP binds a socket on port of fam, which the caller took from the pool.
func bindUDP(fam relay.Addrs, port int) (*udpbatch.Conn, error) {
	conn, err := relay.BindUDP(fam.Bind, port)
	if err != nil {
		return nil, err
	}
	bc, err := udpbatch.NewConn(conn)
	if err != nil {
		_ = conn.Close()
	}
	return bc, err
}

// hold binds port (taken from the pool) and keeps it under a new token.
func (rs *reservations) hold(fam relay.Addrs, port int) ([8]byte, error) {
	var token [8]byte
	bc, err := bindUDP(fam, port)
	if err != nil {
		return token, err
	}
	_, _ = rand.Read(token[:])
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.held == nil {
		rs.held = map[[8]byte]*reservation{}
	}
	rs.held[token] = &reservation{conn: bc, port: port, fam: fam, expires: time.Now().Add(reservationLifetime)}
	return token, nil
}

// claimReservation makes the socket a token holds the relay of a: 508 when the token is
// unknown or expired.
func (s *Server) claimReservation(a *allocation, token [8]byte) (*udpRelay, error) {
	s.reserved.mu.Lock()
	res := s.reserved.held[token]
	delete(s.reserved.held, token)
	s.reserved.mu.Unlock()
	if res == nil {
		return nil, errNoReservation
	}
	if time.Now().After(res.expires) { // not swept yet
		_ = res.conn.Close()
		s.cfg.Pool.Put(res.port)
		return nil, errNoReservation
	}
	return s.relayOn(a, res.conn, res.port, res.fam.Public), nil
}

// expire lets go of the reservations nobody claimed in time.
func (rs *reservations) expire(now time.Time, pool *relay.Pool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for token, res := range rs.held {
		if now.After(res.expires) {
			delete(rs.held, token)
			_ = res.conn.Close()
			pool.Put(res.port)
		}
	}
}
