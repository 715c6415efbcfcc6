// Package testkit holds helpers shared by Ferry's tests in several packages: a self-signed
// certificate for the tls and dtls listeners, and STUN attribute setters that the pion
// library has no public form for.
package testkit

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/pion/stun/v4"
)

// WriteCert writes a self-signed ECDSA certificate for 127.0.0.1 and ::1, valid for an hour,
// and its PKCS #8 key as PEM files named NAME-cert.pem and NAME-key.pem into dir.
func WriteCert(t testing.TB, dir, name string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "ferry test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+"-cert.pem"), filepath.Join(dir, name+"-key.pem")
	for path, block := range map[string]*pem.Block{
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return certFile, keyFile
}

// SetterFunc adapts a function to stun.Setter.
type SetterFunc func(*stun.Message) error

// AddTo calls f.
func (f SetterFunc) AddTo(m *stun.Message) error { return f(m) }

// Attr adds attribute typ with the raw value v.
func Attr(typ stun.AttrType, v []byte) stun.Setter {
	return SetterFunc(func(m *stun.Message) error { m.Add(typ, v); return nil })
}

// PeerAddr adds XOR-PEER-ADDRESS.
func PeerAddr(ap netip.AddrPort) stun.Setter {
	return SetterFunc(func(m *stun.Message) error {
		a := stun.XORMappedAddress{IP: ap.Addr().AsSlice(), Port: int(ap.Port())}
		return a.AddToAs(m, stun.AttrXORPeerAddress)
	})
}
