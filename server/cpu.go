package server

import (
	"math"
	"runtime"
	"sync"
	"time"

	"github.com/ferry-rtc/ferry/internal/procs"
)

// cpuMeter measures the process's CPU use between two samples, per core of the machine; 0
// where the CPU time cannot be read.
type cpuMeter struct {
	mu       sync.Mutex
	lastCPU  time.Duration
	lastWall time.Time
}

func (m *cpuMeter) sample() float64 {
	used, ok := procs.CPUTime()
	if !ok {
		return 0
	}
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
