package main

import "testing"

// TestRateAdd: the steps end at the first step the load could not send, and the result is
// the higher of what it sent there and the rate a step before passed at.
func TestRateAdd(t *testing.T) {
	step := func(rate int, sent float64, lost uint64, pass, loadBound bool) rateStep {
		n := uint64(sent / 2)
		return rateStep{rate: rate, sent: [2]uint64{n, n}, recv: [2]uint64{n - lost, n}, wall: 1, pass: pass, loadBound: loadBound}
	}
	for _, c := range []struct {
		name      string
		steps     []rateStep
		max       int
		loadBound bool
	}{
		{"load sent less than a passed step", []rateStep{step(500000, 500000, 0, true, false), step(600000, 467314, 0, false, true)}, 500000, true},
		{"load sent more than a passed step", []rateStep{step(500000, 500000, 0, true, false), step(600000, 531480, 0, false, true)}, 531480, true},
		{"two failures", []rateStep{step(70000, 70000, 0, true, false), step(80000, 80000, 4000, false, false),
			step(100000, 100000, 9000, false, false), step(125000, 125000, 0, true, false)}, 70000, false},
	} {
		var r rateResult
		i := 0
		for i < len(c.steps) && r.add(c.steps[i], 2) {
			i++
		}
		if r.max != c.max || r.loadBound != c.loadBound {
			t.Errorf("%s: max %d load-bound %v, want %d %v", c.name, r.max, r.loadBound, c.max, c.loadBound)
		}
	}
}
