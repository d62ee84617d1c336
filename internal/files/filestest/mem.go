// Package filestest holds the conformance suite of the files.Meta port,
// which every implementation must pass, and an in-memory implementation
// for unit tests.
package filestest

import (
	"slices"
	"sync"
	"time"

	"github.com/tern-im/tern/internal/files"
)

// Mem is an in-memory files.Meta.
type Mem struct {
	mu    sync.Mutex
	files map[string]files.File
	refs  map[string]map[string]bool
	usage map[string]int64
}

var _ files.Meta = (*Mem)(nil)

// NewMem returns an empty Mem.
func NewMem() *Mem {
	return &Mem{files: map[string]files.File{}, refs: map[string]map[string]bool{}, usage: map[string]int64{}}
}

// Create implements files.Meta.
func (m *Mem) Create(f files.File, quota int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[f.FID]; ok {
		return files.ErrExists
	}
	if quota >= 0 && m.usage[f.Owner]+f.Size > quota {
		return files.ErrQuota
	}
	m.files[f.FID] = f
	m.usage[f.Owner] += f.Size
	return nil
}

// Get implements files.Meta.
func (m *Mem) Get(fid string) (files.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[fid]
	if !ok {
		return f, files.ErrNotFound
	}
	return f, nil
}

// ByHash implements files.Meta.
func (m *Mem) ByHash(owner, h string) (files.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var best files.File
	found := false
	for _, f := range m.files {
		if f.Owner == owner && f.Hash == h && (!found || f.FID > best.FID) {
			best, found = f, true
		}
	}
	if !found {
		return best, files.ErrNotFound
	}
	return best, nil
}

// Update implements files.Meta.
func (m *Mem) Update(f files.File) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	old, ok := m.files[f.FID]
	if !ok {
		return files.ErrNotFound
	}
	f.Owner, f.Size, f.Created = old.Owner, old.Size, old.Created
	m.files[f.FID] = f
	return nil
}

// Delete implements files.Meta.
func (m *Mem) Delete(fid string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[fid]
	if !ok {
		return nil
	}
	delete(m.files, fid)
	delete(m.refs, fid)
	m.usage[f.Owner] -= f.Size
	return nil
}

// Usage implements files.Meta.
func (m *Mem) Usage(owner string) (int64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.usage[owner], nil
}

// AddRef implements files.Meta.
func (m *Mem) AddRef(fid, ref string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.files[fid]; !ok {
		return files.ErrNotFound
	}
	if m.refs[fid] == nil {
		m.refs[fid] = map[string]bool{}
	}
	m.refs[fid][ref] = true
	return nil
}

// RemoveRef implements files.Meta.
func (m *Mem) RemoveRef(fid, ref string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.refs[fid], ref)
	return len(m.refs[fid]), nil
}

// Refs implements files.Meta.
func (m *Mem) Refs(fid string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := []string{}
	for r := range m.refs[fid] {
		out = append(out, r)
	}
	slices.Sort(out)
	return out, nil
}

// BlobInUse implements files.Meta.
func (m *Mem) BlobInUse(h string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, f := range m.files {
		if f.Hash == h && f.IsCommitted() {
			return true, nil
		}
	}
	return false, nil
}

// Pending implements files.Meta.
func (m *Mem) Pending(before time.Time, max int) ([]files.File, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []files.File
	for fid, f := range m.files {
		if len(m.refs[fid]) == 0 && f.Since().Before(before) {
			out = append(out, f)
		}
	}
	slices.SortFunc(out, func(a, b files.File) int {
		if c := a.Since().Compare(b.Since()); c != 0 {
			return c
		}
		return compare(a.FID, b.FID)
	})
	if len(out) > max {
		out = out[:max]
	}
	return out, nil
}

// RefsAfter implements files.Meta.
func (m *Mem) RefsAfter(fid, ref string, max int) ([]files.FileRef, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	var all []files.FileRef
	for f, rs := range m.refs {
		for r := range rs {
			if f > fid || f == fid && r > ref {
				all = append(all, files.FileRef{FID: f, Ref: r})
			}
		}
	}
	slices.SortFunc(all, func(a, b files.FileRef) int {
		if c := compare(a.FID, b.FID); c != 0 {
			return c
		}
		return compare(a.Ref, b.Ref)
	})
	if len(all) > max {
		all = all[:max]
	}
	return all, nil
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
