package relay

import (
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
)

func mustPool(t testing.TB, min, max int) *Pool {
	t.Helper()
	p, err := NewPool(min, max)
	if err != nil {
		t.Fatalf("NewPool(%d, %d): %v", min, max, err)
	}
	return p
}

// drain takes every free port, in the order Get hands them out.
func drain(t testing.TB, p *Pool) []int {
	t.Helper()
	var got []int
	for range p.Size() + 1 { // bounded: a broken pool must not loop forever
		port, ok := p.Get(UDP)
		if !ok {
			return got
		}
		got = append(got, port)
	}
	t.Fatalf("Get kept succeeding past the pool size %d: %v", p.Size(), got)
	return nil
}

func checkCounts(t *testing.T, p *Pool, free int) {
	t.Helper()
	if got := p.Free(); got != free {
		t.Errorf("Free() = %d, want %d", got, free)
	}
	if got := p.InUse(); got != p.Size()-free {
		t.Errorf("InUse() = %d, want %d", got, p.Size()-free)
	}
}

func TestNewPool(t *testing.T) {
	tests := []struct {
		name     string
		min, max int
		wantErr  bool
	}{
		{"one port", 5000, 5000, false},
		{"whole range", 1, 65535, false},
		{"typical", 49152, 65535, false},
		{"min above max", 5001, 5000, true},
		{"min zero", 0, 100, true},
		{"negative min", -1, 100, true},
		{"max above 65535", 60000, 65536, true},
		{"both zero", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := NewPool(tt.min, tt.max)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("NewPool(%d, %d) succeeded, want an error", tt.min, tt.max)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewPool(%d, %d): %v", tt.min, tt.max, err)
			}
			if !p.Contains(tt.min) || !p.Contains(tt.max) || p.Contains(tt.min-1) || p.Contains(tt.max+1) {
				t.Errorf("Contains does not match the range %d-%d", tt.min, tt.max)
			}
			if p.Size() != tt.max-tt.min+1 {
				t.Errorf("Size() = %d, want %d", p.Size(), tt.max-tt.min+1)
			}
			checkCounts(t, p, p.Size())
		})
	}
}

func TestPoolGetHandsOutEveryPortOnce(t *testing.T) {
	p := mustPool(t, 40000, 40009)
	got := drain(t, p)
	want := []int{40000, 40001, 40002, 40003, 40004, 40005, 40006, 40007, 40008, 40009}
	if !slices.Equal(got, want) {
		t.Fatalf("Get order = %v, want %v", got, want)
	}
	checkCounts(t, p, 0)
	if port, ok := p.Get(UDP); ok {
		t.Fatalf("Get on an empty pool = %d, true", port)
	}
	checkCounts(t, p, 0)
}

func TestPoolPutIsFIFO(t *testing.T) {
	p := mustPool(t, 40000, 40004)
	drain(t, p)
	for _, port := range []int{40003, 40000, 40004} {
		p.Put(port)
	}
	checkCounts(t, p, 3)
	if got, want := drain(t, p), []int{40003, 40000, 40004}; !slices.Equal(got, want) {
		t.Fatalf("Get after Put = %v, want Put order %v", got, want)
	}

	// A port released a moment ago is the last to be reused.
	p = mustPool(t, 40000, 40004)
	first, _ := p.Get(UDP)
	p.Put(first)
	if got, want := drain(t, p), []int{40001, 40002, 40003, 40004, 40000}; !slices.Equal(got, want) {
		t.Fatalf("Get after releasing %d = %v, want %v", first, got, want)
	}
}

func TestPoolPutNoOps(t *testing.T) {
	tests := []struct {
		name string
		put  []int
		want []int // what Get yields afterwards, after 40000 and 40001 were taken
	}{
		{"double put", []int{40000, 40000}, []int{40002, 40003, 40000}},
		{"put of a never-taken port", []int{40002}, []int{40002, 40003}},
		{"put below range", []int{39999}, []int{40002, 40003}},
		{"put above range", []int{40004}, []int{40002, 40003}},
		{"put zero", []int{0}, []int{40002, 40003}},
		{"put both twice", []int{40001, 40000, 40001, 40000}, []int{40002, 40003, 40001, 40000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := mustPool(t, 40000, 40003)
			for range 2 {
				if _, ok := p.Get(UDP); !ok {
					t.Fatal("setup: Get failed")
				}
			}
			for _, port := range tt.put {
				p.Put(port)
			}
			checkCounts(t, p, len(tt.want))
			if got := drain(t, p); !slices.Equal(got, tt.want) {
				t.Fatalf("Get yields %v, want %v", got, tt.want)
			}
		})
	}
}

func TestPoolAccounting(t *testing.T) {
	p := mustPool(t, 40000, 40009)
	checkCounts(t, p, 10)
	a, _ := p.Get(UDP)
	b, _ := p.Get(UDP)
	checkCounts(t, p, 8)
	c, _ := p.GetEven(UDP, false)
	checkCounts(t, p, 7)
	p.Put(a)
	checkCounts(t, p, 8)
	p.Put(a) // free already: no change
	checkCounts(t, p, 8)
	p.Put(b)
	p.Put(c)
	checkCounts(t, p, 10)
	if !p.Contains(40000) || !p.Contains(40009) || p.Contains(39999) || p.Contains(40010) {
		t.Error("Contains does not match the range 40000-40009")
	}
}

// TestPoolConcurrent runs Get, GetEven and Put from many goroutines (run it with -race). No
// port may be held by two goroutines at once, and at the end every port is free exactly once.
func TestPoolConcurrent(t *testing.T) {
	const (
		minPort = 40000
		ports   = 32
		workers = 16
		rounds  = 3000
	)
	p := mustPool(t, minPort, minPort+ports-1) // fewer ports than the workers want: Get fails too
	var held [ports]atomic.Bool                // held[i]: some goroutine holds port minPort+i
	var doubles atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			var mine []int
			acquire := func(port int) {
				if !held[port-minPort].CompareAndSwap(false, true) {
					doubles.Add(1)
					return // handed out twice; don't track it twice
				}
				mine = append(mine, port)
			}
			for i := range rounds {
				switch {
				case (i+w)%3 != 0:
					if port, ok := p.Get(UDP); ok {
						acquire(port)
					}
				case (i+w)%5 == 0:
					if port, ok := p.GetEven(UDP, false); ok {
						acquire(port)
					}
				case len(mine) > 0:
					runtime.Gosched() // let others run while this one holds ports
					port := mine[0]
					mine = mine[1:]
					held[port-minPort].Store(false)
					p.Put(port)
				}
			}
			for _, port := range mine {
				held[port-minPort].Store(false)
				p.Put(port)
			}
		})
	}
	wg.Wait()
	if n := doubles.Load(); n != 0 {
		t.Fatalf("%d times a port was handed out while another goroutine held it", n)
	}
	checkCounts(t, p, p.Size())
	got := drain(t, p)
	slices.Sort(got)
	want := make([]int, 0, ports)
	for port := minPort; port < minPort+ports; port++ {
		want = append(want, port)
	}
	if !slices.Equal(got, want) {
		t.Fatalf("after the workers, Get yields %v, want every port once: %v", got, want)
	}
}

func BenchmarkPoolGetPut(b *testing.B) {
	p := mustPool(b, 49152, 65535)
	b.ReportAllocs()
	for b.Loop() {
		port, ok := p.Get(UDP)
		if !ok {
			b.Fatal("empty pool")
		}
		p.Put(port)
	}
}

func TestPoolGetPutDoesNotAllocate(t *testing.T) {
	p := mustPool(t, 49152, 65535)
	allocs := testing.AllocsPerRun(1000, func() {
		port, _ := p.Get(UDP)
		even, _ := p.GetEven(UDP, true)
		p.Put(port)
		p.Put(even)
		p.Put(even + 1)
	})
	if allocs != 0 {
		t.Fatalf("Get/GetEven/Put allocate %.1f times per run, want 0", allocs)
	}
}
