package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// options is what every attack may read.
type options struct {
	MQTT       string
	Duration   time.Duration
	Attackers  []account
	Victims    []account
	FloodConns int
	FloodFrom  string
	From       net.IP // source address of every other attack
}

// counts is one attack's tally. Fields are updated atomically.
type counts struct {
	Attempts atomic.Int64 `json:"-"`
	Refused  atomic.Int64 `json:"-"`
	Accepted atomic.Int64 `json:"-"`
	Errors   atomic.Int64 `json:"-"`
}

func (c *counts) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]int64{
		"attempts": c.Attempts.Load(), "refused": c.Refused.Load(),
		"accepted": c.Accepted.Load(), "errors": c.Errors.Load(),
	})
}

type report struct {
	Attacks      map[string]*counts `json:"attacks"`
	VictimChecks int64              `json:"victim_checks"`
	VictimFailed int64              `json:"victim_failed"`
	Failures     []string           `json:"victim_failures,omitempty"`
	mu           sync.Mutex
}

func (r *report) fail(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.VictimFailed++
	if len(r.Failures) < 20 {
		r.Failures = append(r.Failures, time.Now().UTC().Format(time.TimeOnly)+" "+fmt.Sprintf(format, args...))
	}
}

// attacks are the hostile clients of docs/security.md, by name.
var attacks = map[string]func(context.Context, *options, *counts){
	"flood":   flood,
	"lockout": lockout,
	"tokens":  tokenGuess,
	"nested":  nested,
	"subs":    subs,
	"noack":   noAck,
	"rpc":     rpcSpam,
	"wills":   wills,
}

func attackNames() []string {
	var n []string
	for k := range attacks {
		n = append(n, k)
	}
	slices.Sort(n)
	return n
}

// every runs f at most rate times a second until ctx ends.
func every(ctx context.Context, rate float64, f func()) {
	t := time.NewTicker(time.Duration(float64(time.Second) / rate))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// flood holds FloodConns half-open TCP connections (no CONNECT) from one
// source address, dropping and re-dialling them all every 10 s: the
// file-descriptor exhaustion of item 1.
func flood(ctx context.Context, o *options, c *counts) {
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(o.FloodFrom)}}
	for ctx.Err() == nil {
		var held []net.Conn
		for i := 0; i < o.FloodConns && ctx.Err() == nil; i++ {
			c.Attempts.Add(1)
			conn, err := d.DialContext(ctx, "tcp", o.MQTT)
			if err != nil {
				c.Errors.Add(1)
				continue
			}
			held = append(held, conn)
			c.Accepted.Add(1)
		}
		select {
		case <-ctx.Done():
		case <-time.After(10 * time.Second):
		}
		for _, conn := range held {
			// A refused connection was closed by the broker: reading sees EOF at once.
			conn.SetReadDeadline(time.Now().Add(time.Millisecond))
			if _, err := conn.Read(make([]byte, 1)); err != nil && !isTimeout(err) {
				c.Refused.Add(1)
			}
			conn.Close()
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// lockout tries junk passwords (half of them shaped like tokens) for every
// victim at 100/s: item 6. The victims' token logins are checked apart.
func lockout(ctx context.Context, o *options, c *counts) {
	i := 0
	every(ctx, 100, func() {
		v := o.Victims[i%len(o.Victims)]
		i++
		pw := randHex(8)
		if i%2 == 0 {
			pw = "tt_" + randHex(4)
		}
		rawLogin(o, c, v.UID+".x"+randHex(2), v.UID, pw, nil)
	})
}

// tokenGuess tries well-formed random device tokens for the victims' own
// device at 100/s.
func tokenGuess(ctx context.Context, o *options, c *counts) {
	i := 0
	every(ctx, 100, func() {
		v := o.Victims[i%len(o.Victims)]
		i++
		rawLogin(o, c, v.UID+"."+v.DID, v.UID, "tt_"+randHex(16), nil)
	})
}

// will is a last will for rawLogin.
type will struct {
	Topic   string
	Payload []byte
	Retain  bool
}

// rawLogin sends one MQTT 3.1.1 CONNECT and reads the CONNACK; with a will
// it then drops the TCP connection without DISCONNECT, firing the will.
func rawLogin(o *options, c *counts, clientID, user, pass string, w *will) {
	c.Attempts.Add(1)
	d := net.Dialer{Timeout: 2 * time.Second, LocalAddr: &net.TCPAddr{IP: o.From}}
	conn, err := d.Dial("tcp", o.MQTT)
	if err != nil {
		c.Errors.Add(1)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := conn.Write(connectPacket(clientID, user, pass, w)); err != nil {
		c.Errors.Add(1)
		return
	}
	ack := make([]byte, 4)
	if _, err := bufio.NewReader(conn).Read(ack); err != nil || ack[0] != 0x20 {
		c.Refused.Add(1) // closed without a CONNACK: refused early
		return
	}
	if ack[3] != 0 {
		c.Refused.Add(1)
		return
	}
	c.Accepted.Add(1)
}

// connectPacket encodes an MQTT 3.1.1 CONNECT, clean session, keepalive 30.
func connectPacket(clientID, user, pass string, w *will) []byte {
	str := func(b []byte, s []byte) []byte { return append(append(b, byte(len(s)>>8), byte(len(s))), s...) }
	flags := byte(0xC2) // user name, password, clean session
	if w != nil {
		flags |= 0x04 | 0x08 // will flag, will QoS 1
		if w.Retain {
			flags |= 0x20
		}
	}
	body := str(nil, []byte("MQTT"))
	body = append(body, 4, flags, 0, 30)
	body = str(body, []byte(clientID))
	if w != nil {
		body = str(body, []byte(w.Topic))
		body = str(body, w.Payload)
	}
	body = str(body, []byte(user))
	body = str(body, []byte(pass))
	pkt := []byte{0x10}
	n := len(body)
	for {
		b := byte(n % 128)
		n /= 128
		if n > 0 {
			b |= 0x80
		}
		pkt = append(pkt, b)
		if n == 0 {
			break
		}
	}
	return append(pkt, body...)
}

// device connects an attacker's device with paho (3.1.1) and its password.
func device(o *options, a account, did string, clean bool, opt func(*mqtt.ClientOptions)) (mqtt.Client, error) {
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + o.MQTT).SetClientID(a.UID + "." + did).
		SetUsername(a.UID).SetPassword(a.Secret).SetCleanSession(clean).SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second).SetWriteTimeout(5 * time.Second).
		SetDialer(&net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: o.From}})
	if opt != nil {
		opt(opts)
	}
	cl := mqtt.NewClient(opts)
	tok := cl.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("connect %s.%s: %v", a.UID, did, tok.Error())
	}
	return cl, nil
}

// publish sends one QoS 1 message and waits (bounded) for its PUBACK.
func publish(cl mqtt.Client, c *counts, topic string, payload []byte) {
	c.Attempts.Add(1)
	tok := cl.Publish(topic, 1, false, payload)
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		c.Errors.Add(1)
		return
	}
	c.Accepted.Add(1)
}

// nestedE2E is an e2e value nested depth levels deep.
func nestedE2E(depth int) any {
	var v any = "x"
	for range depth {
		v = []any{v}
	}
	return v
}

// nested sends DMs to the victims whose e2e field is 20 levels deep or
// holds 5,000 elements: item 4. Err events on the reply topic count as
// refusals.
func nested(ctx context.Context, o *options, c *counts) {
	a := o.Attackers[0]
	cl, err := device(o, a, "nest", true, nil)
	if err != nil {
		c.Errors.Add(1)
		return
	}
	defer cl.Disconnect(100)
	cl.Subscribe("im/u/"+a.UID+"/d/nest/rpc", 1, func(_ mqtt.Client, m mqtt.Message) {
		if strings.Contains(string(m.Payload()), `"t":"err"`) {
			c.Refused.Add(1)
		}
	}).WaitTimeout(5 * time.Second)
	big := make([]int, 5000)
	i := 0
	every(ctx, 5, func() {
		v := o.Victims[i%len(o.Victims)]
		i++
		var e2e any = nestedE2E(20)
		if i%2 == 0 {
			e2e = big
		}
		p, _ := json.Marshal(map[string]any{"to": v.UID, "cmid": "n" + randHex(6), "b": "x",
			"ct": "application/vnd.tern.e2ee", "e2e": e2e})
		publish(cl, c, "im/up/"+a.UID+"/nest/msg", p)
	})
}

// subs subscribes 5,000 exact topics inside an attacker's own tree, on a
// persistent session, and reconnects every 30 s: item 3, subscriptions.
func subs(ctx context.Context, o *options, c *counts) {
	a := o.Attackers[1]
	for ctx.Err() == nil {
		cl, err := device(o, a, "subs", false, nil)
		if err != nil {
			c.Errors.Add(1)
			sleep(ctx, time.Second)
			continue
		}
		for i := 0; i < 5000 && ctx.Err() == nil; i += 100 {
			f := map[string]byte{}
			for j := i; j < i+100; j++ {
				f[fmt.Sprintf("im/u/%s/d/subs/x%d", a.UID, j)] = 1
			}
			c.Attempts.Add(int64(len(f)))
			tok := cl.SubscribeMultiple(f, nil)
			if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				c.Errors.Add(1)
				continue
			}
			for _, code := range tok.(*mqtt.SubscribeToken).Result() {
				if code >= 0x80 {
					c.Refused.Add(1)
				} else {
					c.Accepted.Add(1)
				}
			}
		}
		sleep(ctx, 30*time.Second)
		cl.Disconnect(100)
	}
}

// noAck keeps a persistent device that never acknowledges a delivery while
// another attacker sends it 7 KB DMs (near the body limit) at 20/s; every
// 20 s the sink goes offline for 20 s so an offline queue builds too:
// item 3, in-flight and offline memory.
func noAck(ctx context.Context, o *options, c *counts) {
	src, sink := o.Attackers[0], o.Attackers[2]
	cl, err := device(o, src, "src", true, nil)
	if err != nil {
		c.Errors.Add(1)
		return
	}
	defer cl.Disconnect(100)
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() {
		for ctx.Err() == nil {
			s, err := device(o, sink, "sink", false, func(op *mqtt.ClientOptions) { op.SetAutoAckDisabled(true) })
			if err != nil {
				c.Errors.Add(1)
			} else {
				s.Subscribe("im/u/"+sink.UID+"/d/sink/#", 1, func(mqtt.Client, mqtt.Message) {}).WaitTimeout(5 * time.Second)
			}
			sleep(ctx, 20*time.Second)
			if s != nil {
				s.Disconnect(0)
			}
			sleep(ctx, 20*time.Second)
		}
	})
	body := strings.Repeat("z", 7000)
	every(ctx, 20, func() {
		p, _ := json.Marshal(map[string]any{"to": sink.UID, "cmid": "q" + randHex(6), "b": body})
		publish(cl, c, "im/up/"+src.UID+"/src/msg", p)
	})
}

// rpcSpam creates groups around the victims and adds contacts as fast as
// 200 RPCs a second allow: item 3, RPC rate and group caps.
func rpcSpam(ctx context.Context, o *options, c *counts) {
	a := o.Attackers[1]
	cl, err := device(o, a, "rpc", true, nil)
	if err != nil {
		c.Errors.Add(1)
		return
	}
	defer cl.Disconnect(100)
	cl.Subscribe("im/u/"+a.UID+"/d/rpc/rpc", 1, func(_ mqtt.Client, m mqtt.Message) {
		if strings.Contains(string(m.Payload()), `"ok":false`) {
			c.Refused.Add(1)
		}
	}).WaitTimeout(5 * time.Second)
	i := 0
	every(ctx, 200, func() {
		v := o.Victims[i%len(o.Victims)]
		i++
		req := map[string]any{"rid": fmt.Sprint("r", i), "op": "group.create",
			"a": map[string]any{"name": "spam", "members": []string{v.UID}}}
		if i%2 == 0 {
			req = map[string]any{"rid": fmt.Sprint("r", i), "op": "contacts.add", "a": map[string]any{"uid": v.UID}}
		}
		p, _ := json.Marshal(req)
		c.Attempts.Add(1)
		cl.Publish("im/up/"+a.UID+"/rpc/rpc", 1, false, p) // not awaited: as fast as the link goes
	})
}

// wills connects with a retained 60 KB will (the most a 3.1.1 will payload
// carries) on the attacker's own msg
// topic and drops the connection, 10 times a second: item 3, wills.
func wills(ctx context.Context, o *options, c *counts) {
	a := o.Attackers[2]
	payload := []byte(strings.Repeat("w", 60_000))
	i := 0
	every(ctx, 10, func() {
		i++
		did := fmt.Sprintf("w%d", i%50)
		rawLogin(o, c, a.UID+"."+did, a.UID, a.Secret,
			&will{Topic: "im/up/" + a.UID + "/" + did + "/msg", Payload: payload, Retain: true})
	})
}

func sleep(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
