// Package snapmap is a map for readers that must not wait: a fixed array of buckets, each
// an immutable slice behind an atomic pointer. A read is one atomic load and a short scan,
// without a lock or an allocation; a write copies one bucket only, so churn costs the same
// whatever the map's size. Writers must be serialised by the caller.
package snapmap

import (
	"slices"
	"sync/atomic"
)

// buckets keeps buckets short for tens of thousands of entries.
const buckets = 1 << 14

// Map maps K to V. The caller hashes keys (a key's hash must not change), so that the map
// needs no hash function of its own and a read calls none it cannot inline.
type Map[K comparable, V any] struct {
	buckets [buckets]atomic.Pointer[[]entry[K, V]]
}

type entry[K comparable, V any] struct {
	key K
	val V
}

func (m *Map[K, V]) bucket(hash uint64) *atomic.Pointer[[]entry[K, V]] {
	return &m.buckets[(hash>>32)%buckets]
}

// Load returns the value of k, whose hash is hash; false if there is none.
func (m *Map[K, V]) Load(hash uint64, k K) (V, bool) {
	if b := m.bucket(hash).Load(); b != nil {
		for i := range *b {
			if (*b)[i].key == k {
				return (*b)[i].val, true
			}
		}
	}
	var zero V
	return zero, false
}

// Store sets the value of k, whose hash is hash, to v.
func (m *Map[K, V]) Store(hash uint64, k K, v V) {
	slot := m.bucket(hash)
	var next []entry[K, V]
	if b := slot.Load(); b != nil {
		next = slices.DeleteFunc(slices.Clone(*b), func(e entry[K, V]) bool { return e.key == k })
	}
	next = append(next, entry[K, V]{key: k, val: v})
	slot.Store(&next)
}

// Delete removes k, whose hash is hash.
func (m *Map[K, V]) Delete(hash uint64, k K) {
	slot := m.bucket(hash)
	b := slot.Load()
	if b == nil {
		return
	}
	next := slices.DeleteFunc(slices.Clone(*b), func(e entry[K, V]) bool { return e.key == k })
	if len(next) == 0 {
		slot.Store(nil)
		return
	}
	slot.Store(&next)
}
