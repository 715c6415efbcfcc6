package procs

import "testing"

// runLoad feeds decide a load series, one window each, from one P with most 2, and returns the
// Ps after each window.
func runLoad(loads []float64) []int {
	cur, quiet := 1, 0
	out := make([]int, len(loads))
	for i, busy := range loads {
		cur, quiet = decide(cur, 2, busy, quiet)
		out[i] = cur
	}
	return out
}

func repeat(busy float64, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = busy
	}
	return s
}

func TestDecideRaisesOnOneBusyWindow(t *testing.T) {
	got := runLoad([]float64{0.05, 0.1, raiseAt})
	if got[1] != 1 || got[2] != 2 {
		t.Errorf("Ps after quiet, quiet, busy: %v, want [1 1 2]", got)
	}
	if next, _ := decide(1, 4, 0.95, 0); next != 4 {
		t.Errorf("at 1 P of 4, a full window gives %d Ps, want 4", next)
	}
}

func TestDecideLowersOnlyAfterTheQuietPeriod(t *testing.T) {
	loads := append([]float64{0.9}, repeat(0.1, quietWindows)...)
	got := runLoad(loads)
	if got[quietWindows-1] != 2 {
		t.Errorf("lowered after %d quiet windows, want only after %d", quietWindows-1, quietWindows)
	}
	if got[quietWindows] != 1 {
		t.Errorf("still %d Ps after %d quiet windows, want 1", got[quietWindows], quietWindows)
	}
}

func TestDecideQuietPeriodRestartsOnABusyWindow(t *testing.T) {
	// Almost the whole quiet period, one window at lowerBelow, then almost again: no change.
	loads := append([]float64{0.9}, repeat(0.1, quietWindows-1)...)
	loads = append(loads, lowerBelow)
	loads = append(loads, repeat(0.1, quietWindows-1)...)
	for i, procs := range runLoad(loads) {
		if procs != 2 {
			t.Fatalf("window %d: lowered to %d Ps though the quiet period was broken", i, procs)
		}
	}
}

// A load between the thresholds keeps whatever Ps it found, at one P or at all of them.
func TestDecideDoesNotFlapBetweenTheThresholds(t *testing.T) {
	between := repeat((raiseAt+lowerBelow)/2, 10*quietWindows)
	for i, procs := range runLoad(between) {
		if procs != 1 {
			t.Fatalf("window %d: raised to %d Ps at a load under raiseAt", i, procs)
		}
	}
	for i, procs := range runLoad(append([]float64{0.9}, between...)) {
		if procs != 2 {
			t.Fatalf("window %d: %d Ps after a busy window, want 2 while the load stays over lowerBelow", i, procs)
		}
	}
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name string
		o    Options
		most int
		want mode
	}{
		{"auto", Options{}, 2, adapt},
		{"auto on one CPU", Options{}, 1, leave},
		{"fixed", Options{Fixed: 3}, 2, fixed},
		{"environment over auto", Options{Env: "2"}, 2, leave},
		{"environment over fixed", Options{Fixed: 1, Env: "2"}, 2, leave},
	} {
		if got := plan(tc.o, tc.most); got != tc.want {
			t.Errorf("%s: plan = %d, want %d", tc.name, got, tc.want)
		}
	}
}
