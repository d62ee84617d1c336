package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// checkVictims logs each victim in with its device token every 2 s while
// the attacks run, and asks for sync and conv.list: a lockout, a
// poisoned stream or a stalled listener shows up as a failed check.
func checkVictims(ctx context.Context, o *options, rep *report) {
	i := 0
	every(ctx, 0.5*float64(len(o.Victims)), func() {
		v := o.Victims[i%len(o.Victims)]
		i++
		rep.mu.Lock()
		rep.VictimChecks++
		rep.mu.Unlock()
		if err := checkVictim(o, v); err != nil {
			rep.fail("%s: %v", v.UID, err)
		}
	})
}

func checkVictim(o *options, v account) error {
	replies := make(chan map[string]any, 4)
	opts := mqtt.NewClientOptions().AddBroker("tcp://" + o.MQTT).SetClientID(v.UID + "." + v.DID).
		SetUsername(v.UID).SetPassword(v.Secret).SetCleanSession(true).SetAutoReconnect(false).
		SetConnectTimeout(5 * time.Second)
	cl := mqtt.NewClient(opts)
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return fmt.Errorf("token login: %v", tok.Error())
	}
	defer cl.Disconnect(50)
	tok := cl.Subscribe("im/u/"+v.UID+"/d/"+v.DID+"/rpc", 1, func(_ mqtt.Client, m mqtt.Message) {
		var r map[string]any
		if json.Unmarshal(m.Payload(), &r) == nil {
			select {
			case replies <- r:
			default:
			}
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return fmt.Errorf("subscribe: %v", tok.Error())
	}
	for _, op := range []struct {
		name string
		args any
	}{{"sync", map[string]any{"since": 0, "max": 50}}, {"conv.list", map[string]any{}}} {
		p, _ := json.Marshal(map[string]any{"rid": op.name, "op": op.name, "a": op.args})
		if t := cl.Publish("im/up/"+v.UID+"/"+v.DID+"/rpc", 1, false, p); !t.WaitTimeout(5*time.Second) || t.Error() != nil {
			return fmt.Errorf("%s publish: %v", op.name, t.Error())
		}
		select {
		case r := <-replies:
			if r["ok"] != true {
				return fmt.Errorf("%s answered %v", op.name, r["err"])
			}
		case <-time.After(5 * time.Second):
			return fmt.Errorf("%s: no reply in 5 s", op.name)
		}
	}
	return nil
}
