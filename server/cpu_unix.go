//go:build unix

package server

import (
	"math"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// cpuMeter measures the process's CPU use between two samples, per core of the machine.
type cpuMeter struct {
	mu       sync.Mutex
	lastCPU  time.Duration
	lastWall time.Time
}

func (m *cpuMeter) sample() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	used := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	var frac float64
	if wall := now.Sub(m.lastWall); !m.lastWall.IsZero() && wall > 0 {
		frac = float64(used-m.lastCPU) / float64(wall) / float64(runtime.NumCPU())
	}
	m.lastCPU, m.lastWall = used, now
	return math.Round(frac*1000) / 1000
}
