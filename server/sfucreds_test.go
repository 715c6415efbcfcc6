package server

import (
	"slices"
	"testing"
)

// TestSFUCredsHandOver: an heir holds the ended session's credential live until it ends
// itself, which revokes both; an heir that has ended takes nothing over.
func TestSFUCredsHandOver(t *testing.T) {
	c := newSFUCreds()
	c.mint("probe", "sfu-aaaa-probe")
	c.mint("real", "sfu-aaaa-real")
	if !c.handOver("probe", "real") {
		t.Fatal("handOver to a live session refused")
	}
	if c.revoked("sfu-aaaa-probe") || c.revoked("sfu-aaaa-real") {
		t.Fatal("a credential handed over, or its heir's own, is revoked while the heir lives")
	}
	if users := c.end("real"); !slices.Equal(users, []string{"sfu-aaaa-real", "sfu-aaaa-probe"}) {
		t.Fatalf("the heir ended with %v, want its own credential and the one it took over", users)
	}
	if !c.revoked("sfu-aaaa-probe") || !c.revoked("sfu-aaaa-real") {
		t.Fatal("the credentials outlived the heir")
	}
	c.mint("late", "sfu-aaaa-late")
	if c.handOver("late", "real") {
		t.Fatal("an ended session took a credential over")
	}
	if users := c.end("late"); !slices.Equal(users, []string{"sfu-aaaa-late"}) || !c.revoked("sfu-aaaa-late") {
		t.Fatalf("a session whose heir had ended kept its credential: %v", users)
	}
}
