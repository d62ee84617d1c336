package service

import (
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/internal/im"
	"github.com/tern-im/tern/internal/relations"
)

// logOnly is the least of a backend a DM send needs: every user exists,
// nobody blocks, and Append assigns positions and publishes on the
// commit stream as a Log does. Other ports are not implemented (nil).
type logOnly struct {
	im.Store
	commits *im.CommitStream
	mu      sync.Mutex
	seq     uint64
}

func (l *logOnly) DMPeer(string, string) (bool, bool, error) { return true, false, nil }

func (l *logOnly) Append(as ...*im.Append) error {
	for _, a := range as {
		l.mu.Lock()
		l.seq++
		a.Event.Seq, a.US = l.seq, make([]uint64, len(a.To))
		for i := range a.To {
			a.US[i] = l.seq
		}
		l.mu.Unlock()
		l.commits.Publish(a)
	}
	return nil
}

func (l *logOnly) appended() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// TestSendWaitsForDelivery: when delivery is behind (the commit stream is
// full), the next send waits before it appends, so its PUBACK waits too;
// it goes on as soon as delivery takes a commit. Stopping ends the wait
// with 503.
func TestSendWaitsForDelivery(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		commits := im.NewCommitStream(1, 1)
		st := &logOnly{commits: commits}
		stop := make(chan struct{})
		svc, err := New(Options{
			Policy: Policy{DMPolicy: "open", MaxPacket: 128 << 10, MaxBody: 8 << 10, RateBurst: 100, RatePerSec: 100,
				MaxGroupMembers: 10},
			Store: st, Commits: commits, Stop: stop, Relations: relations.New(nil, nil), Now: time.Now,
		})
		if err != nil {
			t.Fatal(err)
		}
		alice := &Device{UID: "alice", DID: "p1", Prefs: im.DefaultPrefs}
		send := func(cmid string) error {
			return svc.Msg(alice, &codec.Up{To: "bob", CMID: cmid, B: "hi"})
		}
		if err := send("1"); err != nil {
			t.Fatal(err)
		}
		sent := make(chan error, 1)
		go func() { sent <- send("2") }()
		synctest.Wait()
		select {
		case err := <-sent:
			t.Fatalf("a send with the stream full returned %v", err)
		default:
		}
		if n := st.appended(); n != 1 {
			t.Fatalf("%d appends while delivery was behind, want 1", n)
		}
		d := <-commits.Lane(0)
		if d.A.Event.Seq != 1 {
			t.Fatalf("delivered seq %d", d.A.Event.Seq)
		}
		commits.Done(d)
		synctest.Wait()
		select {
		case err := <-sent:
			if err != nil {
				t.Fatal(err)
			}
		default:
			t.Fatal("the send still waits after delivery took a commit")
		}
		if n := st.appended(); n != 2 {
			t.Fatalf("%d appends, want 2", n)
		}
		go func() { sent <- send("3") }()
		synctest.Wait()
		close(stop)
		if err := <-sent; err != im.ErrClosed {
			t.Fatalf("send during shutdown: %v, want ErrClosed", err)
		}
	})
}
