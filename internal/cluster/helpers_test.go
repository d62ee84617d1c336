package cluster_test

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

const pw = "password-1"

// dev is a 3.1.1 test device subscribed to its own downstream topics.
type dev struct {
	t        testing.TB
	c        paho.Client
	uid, did string
	in, rpc  chan []byte
	eph      chan []byte
	rid      atomic.Int64
}

// dial connects uid.did at the MQTT listener url; opts adjust the
// client's options.
func dial(t testing.TB, url, uid, did string, opts ...func(*paho.ClientOptions)) *dev {
	t.Helper()
	o := paho.NewClientOptions().AddBroker(url).SetClientID(uid + "." + did).
		SetUsername(uid).SetPassword(pw).SetProtocolVersion(4).SetAutoReconnect(false).
		SetConnectRetry(false).SetCleanSession(true).SetConnectTimeout(brokertest.Timeout).
		SetWriteTimeout(5 * time.Second).SetOrderMatters(true)
	for _, f := range opts {
		f(o)
	}
	d := &dev{t: t, uid: uid, did: did, in: make(chan []byte, 20000), rpc: make(chan []byte, 1000), eph: make(chan []byte, 1000)}
	d.c = paho.NewClient(o)
	brokertest.Wait(t, d.c.Connect(), "connect "+uid+"."+did)
	t.Cleanup(func() { brokertest.Disconnect(t, d.c) })
	brokertest.Subscribe(t, d.c, topics.DeviceFilter(uid, did), 1, func(_ paho.Client, m paho.Message) {
		switch {
		case strings.HasSuffix(m.Topic(), "/in"):
			offer(d.in, m.Payload())
		case strings.HasSuffix(m.Topic(), "/rpc"):
			offer(d.rpc, m.Payload())
		case strings.HasSuffix(m.Topic(), "/eph"):
			offer(d.eph, m.Payload())
		}
	})
	return d
}

func on(t testing.TB, b *brokertest.Broker, uid, did string) *dev { return dial(t, b.URL(), uid, did) }

func offer(ch chan []byte, b []byte) {
	select {
	case ch <- b:
	default:
	}
}

func (d *dev) pub(kind string, payload []byte) {
	d.t.Helper()
	brokertest.Wait(d.t, d.c.Publish(topics.Up(d.uid, d.did, kind), 1, false, payload), "publish "+kind)
}

func (d *dev) text(to, cmid, body string) {
	d.t.Helper()
	d.pub(topics.UpMsg, fmt.Appendf(nil, `{"to":%q,"cmid":%q,"b":%q}`, to, cmid, body))
}

type reply struct {
	RID  string          `json:"rid"`
	OK   bool            `json:"ok"`
	R    json.RawMessage `json:"r"`
	Err  *codec.ReplyErr `json:"err"`
	T    string          `json:"t"`
	Code int             `json:"code"`
	CMID string          `json:"cmid"`
}

// ok makes an RPC that must succeed and decodes its result into out.
func (d *dev) ok(op string, args, out any) {
	d.t.Helper()
	rid := fmt.Sprintf("r%d", d.rid.Add(1))
	req, err := json.Marshal(map[string]any{"rid": rid, "op": op, "a": args})
	if err != nil {
		d.t.Fatal(err)
	}
	d.pub(topics.UpRPC, req)
	for {
		var r reply
		if err := json.Unmarshal(d.wait(d.rpc, "reply to "+op), &r); err != nil {
			d.t.Fatalf("reply: %v", err)
		}
		if r.RID != rid {
			continue
		}
		if !r.OK {
			d.t.Fatalf("%s %v: %+v", op, args, r.Err)
		}
		if out != nil {
			if err := json.Unmarshal(r.R, out); err != nil {
				d.t.Fatalf("%s result: %v", op, err)
			}
		}
		return
	}
}

func (d *dev) wait(ch chan []byte, what string) []byte {
	d.t.Helper()
	select {
	case b := <-ch:
		return b
	case <-time.After(brokertest.Timeout):
		d.t.Fatalf("%s.%s: timed out waiting for %s", d.uid, d.did, what)
		return nil
	}
}

// next returns the next event on the device's in topic.
func (d *dev) next() codec.Event {
	d.t.Helper()
	var ev codec.Event
	if err := codec.Decode(d.wait(d.in, "event"), &ev); err != nil {
		d.t.Fatalf("event: %v", err)
	}
	return ev
}

// syncAll syncs from since until more is false.
func (d *dev) syncAll(since uint64) []codec.Event {
	d.t.Helper()
	var all []codec.Event
	for {
		var r codec.SyncResult
		d.ok("sync", map[string]any{"since": since, "max": 1000}, &r)
		if r.Reset {
			d.t.Fatalf("unexpected reset")
		}
		all = append(all, r.Ev...)
		since = r.Next
		if !r.More {
			return all
		}
	}
}

// sendUntilKilled sends QoS 1 DMs from d to bob, one at a time (cmids
// prefix0, prefix1, …), until n are acknowledged, then kills cmd with
// SIGKILL. Once the sender stopped (a send failed: the node is gone) it
// returns the acknowledged cmids and when the kill was.
func sendUntilKilled(t *testing.T, d *dev, prefix string, n int, cmd *exec.Cmd) ([]string, time.Time) {
	t.Helper()
	var mu sync.Mutex
	var acked []string
	enough, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		for i := 0; ; i++ {
			cmid := fmt.Sprint(prefix, i)
			tok := d.c.Publish(topics.Up(d.uid, d.did, topics.UpMsg), 1, false, fmt.Appendf(nil, `{"to":"bob","cmid":%q,"b":"n%d"}`, cmid, i))
			if !tok.WaitTimeout(3*time.Second) || tok.Error() != nil {
				return // the node is gone: this one was not acknowledged
			}
			mu.Lock()
			acked = append(acked, cmid)
			if len(acked) == n {
				close(enough)
			}
			mu.Unlock()
		}
	}()
	select {
	case <-enough:
	case <-time.After(60 * time.Second):
		t.Fatal("sender too slow")
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	<-stopped
	mu.Lock()
	defer mu.Unlock()
	return slices.Clone(acked), killed
}
