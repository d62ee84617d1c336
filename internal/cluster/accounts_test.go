package cluster_test

import (
	"encoding/json"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
)

// TestAccountChangesAcrossNodes: each node caches token logins and DM
// peers; a change made through one node reaches the others' caches. A
// token revoked on node 1 no longer logs in on node 2, whose cache had
// it; a user deleted on node 1 can no longer be sent a DM on node 2,
// whose peer cache said the account exists; a password changed on node 1
// ends the user's password sessions on node 2. Each check runs after a
// DM that node 1 sends later than the change has reached node 2: one
// node's cluster messages arrive in order, so node 2 has handled the
// change by then (no waiting on time).
func TestAccountChangesAcrossNodes(t *testing.T) {
	t.Parallel()
	nodes := brokertest.StartCluster(t, 3)
	for _, u := range []string{"alice", "bob", "carol", "dave", "erin"} {
		nodes[0].AddUser(u, pw)
	}
	a := on(t, nodes[1], "alice", "p1")
	c := on(t, nodes[0], "carol", "p1")
	n := 0
	// settled returns once alice on node 2 has a DM carol sent from node 1
	// after the change.
	settled := func() {
		t.Helper()
		n++
		cmid := "c" + string(rune('0'+n))
		c.text("alice", cmid, "after")
		for ev := a.next(); ev.CMID != cmid; ev = a.next() {
			// alice's own copies of what she sent
		}
	}

	// Token revoked on node 1: node 2 refuses the login it had cached.
	secret := nodes[0].Token("bob", "t1")
	login := func(b *brokertest.Broker) error {
		o := b.ClientOptions("bob.t1", "bob", secret)
		cl := paho.NewClient(o)
		tok := cl.Connect()
		if !tok.WaitTimeout(brokertest.Timeout) {
			t.Fatal("connect: timed out")
		}
		if tok.Error() == nil {
			brokertest.Disconnect(t, cl)
		}
		return tok.Error()
	}
	if err := login(nodes[1]); err != nil {
		t.Fatalf("token login on node 2: %v", err)
	}
	if _, err := nodes[0].Accounts().RevokeTokens("bob", "t1", ""); err != nil {
		t.Fatal(err)
	}
	settled()
	if err := login(nodes[1]); err == nil {
		t.Fatal("a token revoked on node 1 still logs in on node 2")
	}

	// User deleted on node 1: node 2 refuses a DM its peer cache allowed.
	a.text("dave", "d1", "hello")
	if err := nodes[0].Accounts().DeleteUser("dave"); err != nil {
		t.Fatal(err)
	}
	settled()
	a.text("dave", "d2", "are you there")
	for {
		var r reply
		if err := json.Unmarshal(a.wait(a.rpc, "err for d2"), &r); err != nil {
			t.Fatal(err)
		}
		if r.T != "err" {
			continue
		}
		if r.Code != 404 || r.CMID != "d2" {
			t.Fatalf("DM to a user deleted on node 1: %+v, want err 404 for d2", r)
		}
		break
	}

	// Password changed on node 1: erin's password session on node 2 ends.
	lost := make(chan error, 1)
	o := nodes[1].ClientOptions("erin.p1", "erin", pw).SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	e := paho.NewClient(o)
	brokertest.Wait(t, e.Connect(), "connect erin")
	t.Cleanup(func() { brokertest.Disconnect(t, e) })
	if err := nodes[0].Accounts().SetPassword("erin", "password-2"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-lost:
	case <-time.After(brokertest.Timeout):
		t.Fatal("erin's password session on node 2 is still open after the change on node 1")
	}
}
