package broker_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/adminapi"
	"github.com/tern-im/tern/topics"
)

// TestAddUserReturnsCreated: POST /admin/v1/users answers the stored
// creation time (it was 0001-01-01T00:00:00Z).
func TestAddUserReturnsCreated(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	before := time.Now().Add(-time.Second)
	req, err := http.NewRequest(http.MethodPost, b.HTTPURL()+"/admin/v1/users", strings.NewReader(`{"uid":"alice","password":"`+pw+`"}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+b.AdminToken())
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var u adminapi.User
	if err := json.NewDecoder(resp.Body).Decode(&u); err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("add: %d %v", resp.StatusCode, err)
	}
	if u.Created.Before(before) || u.Created.After(time.Now().Add(time.Second)) {
		t.Errorf("created = %v, want about now", u.Created)
	}
	got, err := adminapi.NewClient(b.HTTPURL(), b.AdminToken()).Users(context.Background())
	if err != nil || len(got) != 1 || !got[0].Created.Equal(u.Created) {
		t.Errorf("listed %+v %v, want created %v", got, err, u.Created)
	}
}

// TestAdminOperations: list connected clients, kick one, stats, and a
// retained operator notice on im/sys/notice.
func TestAdminOperations(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	ctx := context.Background()
	api := adminapi.NewClient(b.HTTPURL(), b.AdminToken())

	lost := make(chan struct{})
	b.Connect(b.ClientOptions("alice.p1", "alice", pw).
		SetConnectionLostHandler(func(paho.Client, error) { close(lost) }))
	if _, _, err := b.Dial5("bob", "p5", pw); err != nil {
		t.Fatal(err)
	}
	cs, err := api.Clients(ctx)
	if err != nil || len(cs) != 2 {
		t.Fatalf("clients: %+v %v", cs, err)
	}
	byID := map[string]adminapi.ClientInfo{}
	for _, ci := range cs {
		byID[ci.ClientID] = ci
	}
	a, bb := byID["alice.p1"], byID["bob.p5"]
	if a.UID != "alice" || a.DID != "p1" || a.Proto != "mqtt/3.1.1" || a.Listener != "mqtt" || !strings.HasPrefix(a.Addr, "127.0.0.1:") || time.Since(a.Since) > time.Minute {
		t.Errorf("alice.p1 = %+v", a)
	}
	if bb.UID != "bob" || bb.Proto != "mqtt/5" {
		t.Errorf("bob.p5 = %+v", bb)
	}

	st, err := api.Stats(ctx)
	if err != nil || st.Connections != 2 || st.Version == "" || st.GoVersion == "" || st.StoreBytes <= 0 || st.Started.IsZero() {
		t.Errorf("stats: %+v %v", st, err)
	}

	if n, err := api.Kick(ctx, "alice.p1"); err != nil || n != 1 {
		t.Fatalf("kick: %d %v", n, err)
	}
	select {
	case <-lost:
	case <-time.After(brokertest.Timeout):
		t.Fatal("kicked client still connected")
	}
	if _, err := api.Kick(ctx, "alice.p1"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("kick of a gone client: %v", err)
	}
	if _, err := api.Kick(ctx, "not-a-client-id"); err == nil || !strings.Contains(err.Error(), "400") {
		t.Errorf("kick of a malformed id: %v", err)
	}

	for _, bad := range []string{"", "   ", strings.Repeat("x", adminapi.MaxNotice+1)} {
		if _, err := api.Notice(ctx, bad); err == nil || !strings.Contains(err.Error(), "400") {
			t.Errorf("notice %q: %v", bad, err)
		}
	}
	n, err := api.Notice(ctx, "maintenance at 22:00 UTC")
	if err != nil || n.TS == 0 {
		t.Fatalf("notice: %+v %v", n, err)
	}
	// Retained: a device that subscribes later gets it.
	d := b.Dial("alice", "p2", pw)
	got := make(chan []byte, 1)
	brokertest.Subscribe(t, d, topics.SysNotice, 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- m.Payload():
		default:
		}
	})
	select {
	case p := <-got:
		var rn adminapi.Notice
		if err := json.Unmarshal(p, &rn); err != nil || rn != n {
			t.Errorf("retained notice %s (%v), want %+v", p, err, n)
		}
	case <-time.After(brokertest.Timeout):
		t.Fatal("no retained notice")
	}
}
