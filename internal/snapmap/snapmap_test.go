package snapmap

import (
	"sync"
	"testing"
)

// TestMap: values are found under their key only, also when keys share a bucket, and
// deletes and replacements leave the other keys alone.
func TestMap(t *testing.T) {
	var m Map[int, string]
	hash := func(k int) uint64 { return uint64(k%3) << 32 } // three buckets for every key
	for k := range 10 {
		m.Store(hash(k), k, "v")
	}
	m.Store(hash(4), 4, "four")
	m.Delete(hash(5), 5)
	m.Delete(hash(42), 42) // absent: nothing happens
	for k := range 10 {
		v, ok := m.Load(hash(k), k)
		switch {
		case k == 5 && ok:
			t.Errorf("key 5 found after its delete")
		case k == 4 && v != "four":
			t.Errorf("key 4 = %q, want the replacement", v)
		case k != 5 && k != 4 && (!ok || v != "v"):
			t.Errorf("key %d = %q, %v", k, v, ok)
		}
	}
	for _, k := range []int{0, 3, 6, 9} {
		m.Delete(hash(k), k)
	}
	if m.buckets[0].Load() != nil {
		t.Error("an emptied bucket still holds a slice")
	}
}

// TestConcurrentReads: readers see either the old or the new value while a writer churns,
// never a torn entry (run with -race).
func TestConcurrentReads(t *testing.T) {
	var m Map[int, *int]
	one := 1
	m.Store(7, 7, &one)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if v, ok := m.Load(7, 7); !ok || *v != 1 {
					t.Error("key 7 lost while others churned")
					return
				}
			}
		})
	}
	for i := range 10000 {
		m.Store(7, 100+i, &one)
		m.Delete(7, 100+i)
	}
	close(stop)
	wg.Wait()
}

func BenchmarkLoad(b *testing.B) {
	var m Map[int, int]
	for k := range 1000 {
		m.Store(uint64(k)<<32, k, k)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if _, ok := m.Load(uint64(i%1000)<<32, i%1000); !ok {
			b.Fatal("missing")
		}
	}
}
