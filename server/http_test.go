package server

import "testing"

func TestLoopbackHost(t *testing.T) {
	for host, want := range map[string]bool{
		"127.0.0.1:9642": true, "[::1]:9642": true, "localhost:9642": true, "localhost": true,
		"attacker.example:9642": false, "192.0.2.10:9642": false, "": false,
	} {
		if got := loopbackHost(host); got != want {
			t.Errorf("loopbackHost(%q) = %v, want %v", host, got, want)
		}
	}
}
