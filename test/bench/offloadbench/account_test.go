package main

import (
	"math"
	"testing"
	"time"
)

// TestWindow: a window's split of two cores' time between the server, the load, the
// kernel and other processes, with the load on core 0 and the server on core 1. Core 1 was
// busy 0.5 s: 0.2 s the server, 0.05 s another process, 0.05 s its ksoftirqd and 0.2 s in no
// task; core 0 was busy 0.7 s: 0.6 s the load, 0.1 s another process. Others leaving
// between the readings do not matter: only cgroup totals are read.
func TestWindow(t *testing.T) {
	a := &accountant{ncpu: 2, load: 0, server: 1}
	t0 := time.Unix(100, 0)
	r0 := reading{t: t0, idle: []float64{10, 10}, all: []float64{5, 5}, load: []float64{1, 0}, srv: []float64{0, 2}, ksi: []float64{0, 1}}
	r1 := reading{t: t0.Add(time.Second), idle: []float64{10.3, 10.5},
		all: []float64{5.7, 5.3}, load: []float64{1.6, 0}, srv: []float64{0, 2.2}, ksi: []float64{0, 1.05}}
	u := a.window(r0, r1)
	for _, c := range []struct {
		name      string
		got, want float64
	}{
		{"server core", u.serverCore, 0.45},
		{"machine-wide", u.machine, 0.45},
		{"other, all cores", u.otherAll, 0.15},
		{"other, server core", u.otherServer, 0.05},
		{"load processes", u.loadProc, 0.6},
		{"server process", u.serverProc, 0.2},
		{"in no process, server core", u.unowned[1], 0.25},
	} {
		if math.Abs(c.got-c.want) > 1e-9 {
			t.Errorf("%s: %.3f s, want %.3f s", c.name, c.got, c.want)
		}
	}
}
