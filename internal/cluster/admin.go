package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// Admin views across nodes: a node asks every other node on
// tern-cl.{node}.adm.{kind} (a request that every node receives, not
// one) and gathers the answers for a while (GET /admin/v1/cluster/…).

const kindAdm = "adm"

// answer is one node's reply to an admin request.
type answer struct {
	Node string          `json:"n"`
	V    json.RawMessage `json:"v,omitempty"`
	Err  string          `json:"e,omitempty"`
}

// subscribeAdmin answers the other nodes' admin requests with
// Options.Admin.
func (l *Link) subscribeAdmin() error {
	if l.o.Admin == nil {
		return nil
	}
	sub, err := l.o.Conn.Subscribe(prefix+"*."+kindAdm+".*", l.answer)
	if err != nil {
		return fmt.Errorf("cluster: subscribe admin: %w", err)
	}
	l.adm = sub
	return nil
}

func (l *Link) answer(m *nats.Msg) {
	f := strings.Split(m.Subject, ".")
	if len(f) != 4 || f[1] == l.o.Node || m.Reply == "" {
		return
	}
	a := answer{Node: l.o.Node}
	v, err := l.o.Admin(f[3])
	if err == nil {
		a.V, err = json.Marshal(v)
	}
	if err != nil {
		a.Err = err.Error()
	}
	b, err := json.Marshal(a)
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil {
		l.o.Log.Debug("cluster: admin answer", "kind", f[3], "error", err)
	}
}

// ErrAdmin: a node failed to answer an admin request.
var ErrAdmin = errors.New("cluster: a node could not answer")

// Gather asks every other node for kind and returns their answers (JSON)
// by node. It waits until every node heard within the node timeout has
// answered, or for wait.
func (l *Link) Gather(kind string, wait time.Duration) (map[string]json.RawMessage, error) {
	inbox := l.o.Conn.NewRespInbox()
	sub, err := l.o.Conn.SubscribeSync(inbox)
	if err != nil {
		return nil, fmt.Errorf("cluster: gather %s: %w", kind, err)
	}
	defer func() { _ = sub.Unsubscribe() }() // the inbox is this call's alone
	if err := l.o.Conn.PublishRequest(prefix+l.o.Node+"."+kindAdm+"."+kind, inbox, nil); err != nil {
		return nil, fmt.Errorf("cluster: gather %s: %w", kind, err)
	}
	want := l.alive()
	out := map[string]json.RawMessage{}
	var errs []error
	deadline := time.Now().Add(wait)
	for len(out)+len(errs) < want {
		m, err := sub.NextMsg(time.Until(deadline))
		if errors.Is(err, nats.ErrTimeout) {
			break
		}
		if err != nil {
			return out, fmt.Errorf("cluster: gather %s: %w", kind, err)
		}
		var a answer
		if err := json.Unmarshal(m.Data, &a); err != nil || a.Node == "" {
			continue
		}
		if a.Err != "" {
			errs = append(errs, fmt.Errorf("%w: %s: %s", ErrAdmin, a.Node, a.Err))
			continue
		}
		out[a.Node] = a.V
	}
	return out, errors.Join(errs...)
}

// alive counts the other nodes heard within the node timeout.
func (l *Link) alive() int {
	l.live.mu.Lock()
	defer l.live.mu.Unlock()
	n := 0
	for _, t := range l.live.heard {
		if time.Since(t) < l.o.NodeTimeout {
			n++
		}
	}
	return n
}
