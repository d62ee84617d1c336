package filestest

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/tern-im/tern/internal/files"
)

// Run is the conformance suite of files.Meta: newMeta returns an empty
// implementation for each subtest.
func Run(t *testing.T, newMeta func(t *testing.T) files.Meta) {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	h1 := "1111111111111111111111111111111111111111111111111111111111111111"
	h2 := "2222222222222222222222222222222222222222222222222222222222222222"
	mk := func(fid, owner string, size int64, h string, created time.Time) files.File {
		return files.File{FID: fid, Owner: owner, Size: size, Hash: h, Name: "n", CT: "text/plain", Chunk: 10, Created: created}
	}

	t.Run("CreateGetQuota", func(t *testing.T) {
		m := newMeta(t)
		must(t, m.Create(mk("F1", "alice", 60, h1, t0), 100))
		if err := m.Create(mk("F1", "alice", 1, h1, t0), 100); !errors.Is(err, files.ErrExists) {
			t.Fatalf("create twice: %v, want ErrExists", err)
		}
		if err := m.Create(mk("F2", "alice", 41, h2, t0), 100); !errors.Is(err, files.ErrQuota) {
			t.Fatalf("over quota: %v, want ErrQuota", err)
		}
		must(t, m.Create(mk("F3", "alice", 40, h2, t0), 100))
		must(t, m.Create(mk("F4", "bob", 1000, "", t0), -1)) // no quota
		if u, err := m.Usage("alice"); err != nil || u != 100 {
			t.Fatalf("usage = %d, %v; want 100", u, err)
		}
		got, err := m.Get("F1")
		if err != nil || got != mk("F1", "alice", 60, h1, t0) {
			t.Fatalf("get = %+v, %v", got, err)
		}
		if _, err := m.Get("nope"); !errors.Is(err, files.ErrNotFound) {
			t.Fatalf("get missing: %v", err)
		}
		must(t, m.Delete("F1"))
		must(t, m.Delete("F1")) // absent: fine
		if u, _ := m.Usage("alice"); u != 40 {
			t.Fatalf("usage after delete = %d, want 40", u)
		}
		if _, err := m.Get("F1"); !errors.Is(err, files.ErrNotFound) {
			t.Fatalf("get deleted: %v", err)
		}
	})

	t.Run("ByHashAndBlobs", func(t *testing.T) {
		m := newMeta(t)
		must(t, m.Create(mk("F1", "alice", 5, h1, t0), -1))
		must(t, m.Create(mk("F2", "bob", 5, h1, t0), -1))
		must(t, m.Create(mk("F3", "alice", 5, "", t0), -1)) // tus: no hash yet
		if f, err := m.ByHash("alice", h1); err != nil || f.FID != "F1" {
			t.Fatalf("ByHash alice = %+v, %v", f, err)
		}
		if _, err := m.ByHash("carol", h1); !errors.Is(err, files.ErrNotFound) {
			t.Fatalf("ByHash carol: %v", err)
		}
		if used, _ := m.BlobInUse(h1); used {
			t.Fatal("blob in use before any commit")
		}
		f3, _ := m.Get("F3")
		f3.Hash, f3.Committed, f3.CT, f3.W, f3.H = h2, t0.Add(time.Minute), "image/png", 3, 4
		f3.Size, f3.Owner = 999, "mallory" // ignored
		must(t, m.Update(f3))
		got, _ := m.Get("F3")
		if got.Size != 5 || got.Owner != "alice" || got.CT != "image/png" || !got.IsCommitted() || got.W != 3 {
			t.Fatalf("after update: %+v", got)
		}
		if f, err := m.ByHash("alice", h2); err != nil || f.FID != "F3" {
			t.Fatalf("ByHash after commit = %+v, %v", f, err)
		}
		if used, _ := m.BlobInUse(h2); !used {
			t.Fatal("committed blob not in use")
		}
		must(t, m.Delete("F3"))
		if used, _ := m.BlobInUse(h2); used {
			t.Fatal("blob in use after its only file went")
		}
		if _, err := m.ByHash("alice", h2); !errors.Is(err, files.ErrNotFound) {
			t.Fatalf("ByHash after delete: %v", err)
		}
		if err := m.Update(mk("nope", "x", 1, "", t0)); !errors.Is(err, files.ErrNotFound) {
			t.Fatalf("update missing: %v", err)
		}
	})

	t.Run("RefsAndPending", func(t *testing.T) {
		m := newMeta(t)
		must(t, m.Create(mk("F1", "alice", 1, h1, t0), -1))
		must(t, m.Create(mk("F2", "alice", 1, h2, t0.Add(time.Hour)), -1))
		must(t, m.Create(mk("F3", "alice", 1, "", t0.Add(2*time.Hour)), -1))
		pend := func(before time.Time, max int) []string {
			t.Helper()
			fs, err := m.Pending(before, max)
			must(t, err)
			var ids []string
			for _, f := range fs {
				ids = append(ids, f.FID)
			}
			return ids
		}
		if got := pend(t0.Add(90*time.Minute), 10); !slices.Equal(got, []string{"F1", "F2"}) {
			t.Fatalf("pending = %v", got)
		}
		if got := pend(t0.Add(3*time.Hour), 2); !slices.Equal(got, []string{"F1", "F2"}) {
			t.Fatalf("pending max 2 = %v", got)
		}
		if err := m.AddRef("nope", "m:x"); !errors.Is(err, files.ErrNotFound) {
			t.Fatalf("AddRef missing: %v", err)
		}
		must(t, m.AddRef("F1", "m:a"))
		must(t, m.AddRef("F1", "m:a"))
		must(t, m.AddRef("F1", "m:b"))
		if refs, _ := m.Refs("F1"); !slices.Equal(refs, []string{"m:a", "m:b"}) {
			t.Fatalf("refs = %v", refs)
		}
		if got := pend(t0.Add(3*time.Hour), 10); !slices.Equal(got, []string{"F2", "F3"}) {
			t.Fatalf("pending with F1 referenced = %v", got)
		}
		// A commit restarts the wait from the commit time.
		f2, _ := m.Get("F2")
		f2.Committed = t0.Add(5 * time.Hour)
		must(t, m.Update(f2))
		if got := pend(t0.Add(3*time.Hour), 10); !slices.Equal(got, []string{"F3"}) {
			t.Fatalf("pending after F2 commit = %v", got)
		}
		if left, err := m.RemoveRef("F1", "m:a"); err != nil || left != 1 {
			t.Fatalf("RemoveRef = %d, %v", left, err)
		}
		if left, err := m.RemoveRef("F1", "m:zz"); err != nil || left != 1 {
			t.Fatalf("RemoveRef absent = %d, %v", left, err)
		}
		if left, err := m.RemoveRef("F1", "m:b"); err != nil || left != 0 {
			t.Fatalf("RemoveRef last = %d, %v", left, err)
		}
		must(t, m.AddRef("F3", "m:c"))
		must(t, m.Delete("F3"))
		if refs, _ := m.Refs("F3"); len(refs) != 0 {
			t.Fatalf("refs of deleted file = %v", refs)
		}
		if got := pend(t0.Add(10*time.Hour), 10); !slices.Equal(got, []string{"F1", "F2"}) {
			t.Fatalf("pending at the end = %v", got)
		}
	})

	t.Run("RefsAfter", func(t *testing.T) {
		m := newMeta(t)
		must(t, m.Create(mk("F1", "alice", 1, h1, t0), -1))
		must(t, m.Create(mk("F2", "alice", 1, h2, t0), -1))
		for _, r := range []files.FileRef{{FID: "F2", Ref: "m:b"}, {FID: "F1", Ref: "m:z"}, {FID: "F1", Ref: "m:a"}, {FID: "F2", Ref: "p:x"}} {
			must(t, m.AddRef(r.FID, r.Ref))
		}
		var got []files.FileRef
		fid, ref := "", ""
		for {
			page, err := m.RefsAfter(fid, ref, 3)
			must(t, err)
			got = append(got, page...)
			if len(page) < 3 {
				break
			}
			fid, ref = page[len(page)-1].FID, page[len(page)-1].Ref
		}
		want := []files.FileRef{{FID: "F1", Ref: "m:a"}, {FID: "F1", Ref: "m:z"}, {FID: "F2", Ref: "m:b"}, {FID: "F2", Ref: "p:x"}}
		if !slices.Equal(got, want) {
			t.Fatalf("refs = %v, want %v", got, want)
		}
	})
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
