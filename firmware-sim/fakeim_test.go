package firmwaresim_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/fxamacker/cbor/v2"
	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"
)

// fakeIM is a deliberately small stand-in for Tern's messaging layer
// (PROTOCOL §5, §9: hello, sync, group.create, msg with cmid dedupe) on a
// plain mochi broker. It exists so the simulator's device logic (outbox,
// resend, us dedupe, gap → sync) is exercised before the real messaging
// is merged; it also loses a share of live deliveries on purpose so that
// only sync can make the run complete.
type fakeIM struct {
	mqtt.HookBase
	srv      *mqtt.Server
	dropLive float64

	mu      sync.Mutex
	streams map[string][]map[string]any // uid → events, us = index+1
	seqs    map[string]uint64           // cv → last seq
	dedupe  map[string]map[string]any   // uid/did/cmid → event
	devices map[string]map[string]bool  // uid → dids that said hello
	cborDev map[string]bool             // uid/did → wants CBOR
	groups  map[string][]string         // gid → members
	nextID  uint64
}

func (h *fakeIM) ID() string { return "fake-im" }

func (h *fakeIM) Provides(b byte) bool { return b == mqtt.OnPublish }

// startFakeIM starts mochi with the fake on 127.0.0.1:0.
func startFakeIM(t *testing.T, dropLive float64) string {
	t.Helper()
	s := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	h := &fakeIM{srv: s, dropLive: dropLive,
		streams: map[string][]map[string]any{}, seqs: map[string]uint64{},
		dedupe: map[string]map[string]any{}, devices: map[string]map[string]bool{},
		cborDev: map[string]bool{}, groups: map[string][]string{}}
	if err := s.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	if err := s.AddHook(h, nil); err != nil {
		t.Fatal(err)
	}
	l := listeners.NewTCP(listeners.Config{ID: "t", Address: "127.0.0.1:0"})
	if err := s.AddListener(l); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return l.Address()
}

func decodeAny(p []byte, v any) error {
	if bytes.HasPrefix(bytes.TrimSpace(p), []byte("{")) {
		return json.Unmarshal(p, v)
	}
	return cbor.Unmarshal(p, v)
}

func (h *fakeIM) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	parts := strings.Split(pk.TopicName, "/")
	if len(parts) != 5 || parts[0] != "im" || parts[1] != "up" {
		return pk, nil
	}
	uid, did := parts[2], parts[3]
	h.mu.Lock()
	defer h.mu.Unlock()
	switch parts[4] {
	case "rpc":
		var req struct {
			RID string         `json:"rid"`
			Op  string         `json:"op"`
			A   map[string]any `json:"a"`
		}
		if decodeAny(pk.Payload, &req) != nil {
			break
		}
		h.rpc(uid, did, req.RID, req.Op, req.A)
	case "msg":
		var m struct {
			To   string `json:"to"`
			CMID string `json:"cmid"`
			B    string `json:"b"`
		}
		if decodeAny(pk.Payload, &m) != nil {
			break
		}
		h.msg(uid, did, m.To, m.CMID, m.B)
	}
	return pk, packets.CodeSuccessIgnore
}

func (h *fakeIM) send(uid, did, ch string, v map[string]any, forceJSON bool) {
	var p []byte
	var err error
	if h.cborDev[uid+"/"+did] && !forceJSON {
		p, err = cbor.Marshal(v)
	} else {
		p, err = json.Marshal(v)
	}
	if err != nil {
		panic(err)
	}
	if err := h.srv.Publish("im/u/"+uid+"/d/"+did+"/"+ch, p, false, 1); err != nil {
		panic(err)
	}
}

func (h *fakeIM) rpc(uid, did, rid, op string, a map[string]any) {
	reply := map[string]any{"rid": rid, "ok": true}
	num := func(k string) uint64 {
		switch x := a[k].(type) {
		case float64:
			return uint64(x)
		case uint64:
			return x
		case int64:
			return uint64(x)
		}
		return 0
	}
	switch op {
	case "hello":
		if h.devices[uid] == nil {
			h.devices[uid] = map[string]bool{}
		}
		h.devices[uid][did] = true
		h.cborDev[uid+"/"+did] = a["enc"] == "cbor"
		reply["r"] = map[string]any{"now": 1, "epoch": 1, "us_head": len(h.streams[uid])}
		h.send(uid, did, "rpc", reply, true) // the hello reply is always JSON
		return
	case "sync":
		since, max := num("since"), num("max")
		st := h.streams[uid]
		ev := []map[string]any{}
		for us := since + 1; us <= uint64(len(st)) && uint64(len(ev)) < max; us++ {
			ev = append(ev, st[us-1])
		}
		next := since + uint64(len(ev))
		reply["r"] = map[string]any{"ev": ev, "next": next, "more": next < uint64(len(st))}
	case "contacts.add":
		reply["r"] = map[string]any{"contacts": []string{fmt.Sprint(a["uid"])}, "blocked": []string{}}
	case "group.create":
		gid, _ := a["gid"].(string)
		if _, ok := h.groups[gid]; ok {
			reply = map[string]any{"rid": rid, "ok": false, "err": map[string]any{"code": 409, "msg": "exists"}}
			break
		}
		members := []string{uid}
		ms, _ := a["members"].([]any)
		for _, m := range ms {
			members = append(members, fmt.Sprint(m))
		}
		h.groups[gid] = members
		reply["r"] = map[string]any{"gid": gid, "cv": "g:" + gid}
	default:
		reply = map[string]any{"rid": rid, "ok": false, "err": map[string]any{"code": 404, "msg": "unknown op"}}
	}
	h.send(uid, did, "rpc", reply, false)
}

func (h *fakeIM) msg(uid, did, to, cmid, body string) {
	key := uid + "/" + did + "/" + cmid
	if ev, ok := h.dedupe[key]; ok {
		h.send(uid, did, "in", ev, false) // §5: re-send the original to that device
		return
	}
	var cv string
	var members []string
	if gid, ok := strings.CutPrefix(to, "g:"); ok {
		members, cv = h.groups[gid], to
		if members == nil {
			h.send(uid, did, "rpc", map[string]any{"t": "err", "cmid": cmid, "code": 404, "msg": "no group"}, false)
			return
		}
	} else {
		pair := []string{uid, to}
		sort.Strings(pair)
		members, cv = pair, "d:"+pair[0]+":"+pair[1]
	}
	h.seqs[cv]++
	h.nextID++
	base := map[string]any{"t": "msg", "id": fmt.Sprintf("%026d", h.nextID), "cv": cv, "seq": h.seqs[cv],
		"from": uid, "fd": did, "ts": 1, "cmid": cmid, "b": body}
	for _, m := range members {
		ev := map[string]any{}
		for k, v := range base {
			ev[k] = v
		}
		h.streams[m] = append(h.streams[m], ev)
		ev["us"] = len(h.streams[m])
		if m == uid {
			h.dedupe[key] = ev
		}
		for d := range h.devices[m] {
			if rand.Float64() < h.dropLive {
				continue // lost on the way: only sync brings it
			}
			h.send(m, d, "in", ev, false)
		}
	}
}
