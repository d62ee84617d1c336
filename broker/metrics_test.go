package broker_test

import (
	"encoding/json"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/topics"
)

// imTraffic connects alice and bob, has alice send bob one DM and make
// one sync RPC, waits for both answers, and makes one refused login.
// It returns how many PUBLISH packets the clients sent.
func imTraffic(t *testing.T, b *brokertest.Broker) int {
	t.Helper()
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	bob := b.Dial("bob", "p1", pw)
	got := make(chan paho.Message, 8)
	brokertest.Subscribe(t, bob, topics.DeviceFilter("bob", "p1"), 1, func(_ paho.Client, m paho.Message) {
		select {
		case got <- m:
		default:
		}
	})
	alice := b.Dial("alice", "p1", pw)
	replies := make(chan paho.Message, 8)
	brokertest.Subscribe(t, alice, topics.Device("alice", "p1", topics.ChanRPC), 1, func(_ paho.Client, m paho.Message) {
		select {
		case replies <- m:
		default:
		}
	})
	brokertest.Wait(t, alice.Publish(topics.Up("alice", "p1", topics.UpMsg), 1, false, `{"to":"bob","cmid":"m1","b":"hi"}`), "send")
	brokertest.Wait(t, alice.Publish(topics.Up("alice", "p1", topics.UpRPC), 1, false, `{"rid":"s1","op":"sync","a":{"since":0}}`), "sync")
	for _, ch := range []chan paho.Message{got, replies} {
		select {
		case <-ch:
		case <-t.Context().Done():
			t.Fatal("no delivery or reply")
		}
	}
	if err := b.TryConnect(b.ClientOptions("alice.p2", "alice", "wrong-password")); !refused(err) {
		t.Fatalf("wrong password: %v", err)
	}
	return 2
}

// TestMessagesInCountsOnlyClients: tern_messages_in_total counts the
// publishes clients sent, not the deliveries, replies and presence the
// server injects (mochi's own counter, used before, counted those too).
func TestMessagesInCountsOnlyClients(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t)
	sent := imTraffic(t, b)
	m := httpGet(t, b.HTTPURL()+"/metrics")
	if want := "\ntern_messages_in_total " + itoa(sent) + "\n"; !strings.Contains(m, want) {
		t.Errorf("metrics lack %q:\n%s", strings.TrimSpace(want), grepLines(m, "tern_messages_in_total"))
	}
	for _, want := range []string{
		"\ntern_events_appended_total 1\n",
		`tern_rpc_requests_total{code="200",op="sync"} 1`,
		"\ntern_sync_duration_seconds_count 1\n",
		"\ntern_sequencer_batch_size_count 1\n",
		`tern_build_info{commit="`,
		"\ntern_store_size_bytes ",
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %q", strings.TrimSpace(want))
		}
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestDashboardMetricsExported: every metric configs/grafana-tern.json
// queries is exported by /metrics of a running broker that has seen some
// IM traffic, so the dashboard cannot drift from the code.
func TestDashboardMetricsExported(t *testing.T) {
	t.Parallel()
	raw, err := os.ReadFile("../configs/grafana-tern.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	b := brokertest.Start(t)
	imTraffic(t, b)
	exposed := map[string]bool{}
	for _, l := range strings.Split(httpGet(t, b.HTTPURL()+"/metrics"), "\n") {
		if l == "" || l[0] == '#' {
			continue
		}
		name, _, _ := strings.Cut(l, "{")
		name, _, _ = strings.Cut(name, " ")
		exposed[name] = true
	}
	selector := regexp.MustCompile(`([a-zA-Z_:][a-zA-Z0-9_:]*)\{`)
	n := 0
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			for _, m := range selector.FindAllStringSubmatch(tg.Expr, -1) {
				n++
				if !exposed[m[1]] {
					t.Errorf("panel %q queries %s, which /metrics does not export", p.Title, m[1])
				}
			}
		}
	}
	if n < 10 {
		t.Fatalf("found only %d metric selectors in the dashboard", n)
	}
}
