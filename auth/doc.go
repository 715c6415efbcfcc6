// Package auth holds the credentials of Ferry's TURN server: the users file (HA1 keys, never
// plain passwords), TURN REST API shared secrets (several at once, so a secret can be rotated
// without cutting off credentials already handed out), and the Authenticator the server consults
// for each authenticated request.
//
// The package keeps no package-level mutable state: everything lives in an Authenticator, which a
// config reload replaces as a whole, or in the users file on disk.
package auth
