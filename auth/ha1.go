package auth

import (
	"crypto/md5" //nolint:gosec // RFC 8489 long-term credentials are defined with MD5.
)

// HA1 is the RFC 8489 long-term key MD5(name:realm:password) (same bytes as turn.GenerateAuthKey).
//
// It is what the users file stores instead of the password: it is enough to check a request's
// MESSAGE-INTEGRITY, but does not reveal the password, and it is bound to one realm.
func HA1(name, realm, password string) []byte {
	sum := md5.Sum([]byte(name + ":" + realm + ":" + password))
	return sum[:]
}
