package client

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/tern-im/tern/internal/codec"
	"github.com/tern-im/tern/topics"
)

// Outgoing is a message to send (§5). To is a uid (a DM), or a cv
// (d:{a}:{b} or g:{gid}). CMID is the client's id of the message, at most
// 32 bytes; empty means one is made up.
type Outgoing struct {
	To   string
	B    string
	CT   string // content type; empty means text/plain
	Re   string // reply-to message id
	Th   string // thread root id
	TTL  int64  // disappearing after this many seconds
	CMID string
	// Att lists the fids of committed files to attach (Upload returns
	// them); the server fills in each file's name, size, type and hash.
	Att []string
}

// ErrBadID is an event id that is not a ULID.
var ErrBadID = errors.New("client: not an event id")

// Send queues a text message and returns its cmid. It never blocks on the
// network: the message is published when the device is online, and again
// until its echo arrives in the stream (or the server refuses it: an
// *Error event names the cmid).
func (c *Client) Send(to, body string) string {
	cmid, _ := c.SendMsg(Outgoing{To: to, B: body}) // only ids can fail, and there are none
	return cmid
}

// SendMsg queues m (see Send) and returns its cmid.
func (c *Client) SendMsg(m Outgoing) (string, error) {
	up := codec.Up{To: m.To, B: m.B, CT: m.CT, TTL: m.TTL, CMID: m.CMID}
	for _, fid := range m.Att {
		up.Att = append(up.Att, codec.Att{FID: fid})
	}
	var err error
	if up.Re, err = parseID(m.Re); err != nil {
		return "", err
	}
	if up.Th, err = parseID(m.Th); err != nil {
		return "", err
	}
	return c.enqueue(up)
}

// Edit queues an edit of message id (one of the device's user's own).
func (c *Client) Edit(id, body string) (string, error) {
	return c.target(codec.Up{Op: codec.TEdit, B: body}, id)
}

// Delete queues the deletion of message id.
func (c *Client) Delete(id string) (string, error) {
	return c.target(codec.Up{Op: codec.TDel}, id)
}

// React queues reaction k to message id; the same k again removes it.
func (c *Client) React(id, k string) (string, error) {
	return c.target(codec.Up{Op: codec.TReact, K: k}, id)
}

func (c *Client) target(up codec.Up, id string) (string, error) {
	u, err := parseID(id)
	if err != nil {
		return "", err
	}
	if u == nil {
		return "", ErrBadID
	}
	up.ID = u
	return c.enqueue(up)
}

func parseID(s string) (*ulid.ULID, error) {
	if s == "" {
		return nil, nil
	}
	u, err := ulid.ParseStrict(s)
	if err != nil {
		return nil, fmt.Errorf("%w: %q", ErrBadID, s)
	}
	return &u, nil
}

func (c *Client) enqueue(up codec.Up) (string, error) {
	if up.CMID == "" {
		up.CMID = c.prefix + strconv.FormatUint(c.nextN.Add(1), 10)
	}
	p, err := codec.Encode(up, c.opts.CBOR)
	if err != nil {
		return "", fmt.Errorf("client: encode: %w", err)
	}
	m := &outMsg{cmid: up.CMID, payload: p}
	c.mu.Lock()
	c.outbox = append(c.outbox, m)
	c.byCMID[up.CMID] = m
	c.mu.Unlock()
	notify(c.sendNotify)
	return up.CMID, nil
}

// Mark sends a receipt (§6): the user has received (k "dlv") or read (k
// "read") cv up to seq upto. Markers are cumulative and not retried: a
// lost one is covered by the next.
func (c *Client) Mark(cv, k string, upto uint64) error {
	return c.publish(topics.UpRcpt, 1, codec.Rcpt{CV: cv, K: k, Upto: upto})
}

// Typing sends a typing state (§7): s "c" composing or "p" paused.
func (c *Client) Typing(cv, s string) error {
	return c.publish(topics.UpTyp, 0, codec.Typ{CV: cv, S: s})
}

// SetPresence sets the user's status from this device (§8): "on", "away"
// or "busy", with an optional text.
func (c *Client) SetPresence(status, text string) error {
	return c.publish(topics.UpPres, 1, struct {
		S  string `json:"s" cbor:"s"`
		TX string `json:"tx,omitempty" cbor:"tx,omitempty"`
	}{status, text})
}

// publish sends one fire-and-forget command on the current connection.
func (c *Client) publish(kind string, qos byte, v any) error {
	cn := c.current()
	if cn == nil {
		return ErrOffline
	}
	p, err := codec.Encode(v, c.opts.CBOR)
	if err != nil {
		return fmt.Errorf("client: encode: %w", err)
	}
	cn.c.Publish(c.up(kind), qos, false, p) // QoS 0/1 without waiting: a lost one is superseded
	return nil
}

// confirm drops an echoed command from the outbox.
func (c *Client) confirm(cmid string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := c.byCMID[cmid]
	if m == nil {
		return
	}
	delete(c.byCMID, cmid)
	for i, o := range c.outbox {
		if o == m {
			c.outbox = append(c.outbox[:i], c.outbox[i+1:]...)
			break
		}
	}
	if len(c.outbox) == 0 {
		close(c.drained)
		c.drained = make(chan struct{})
	}
}

// onErr handles a refused command: 429 and 503 are retried after a
// pause, anything else is final and reported.
func (c *Client) onErr(e *Error) {
	if e.CMID != "" && (e.Code == 429 || e.Code == 503) {
		c.mu.Lock()
		m := c.byCMID[e.CMID]
		if m != nil {
			m.published = false
			m.notBefore = time.Now().Add(time.Second)
		}
		c.mu.Unlock()
		if m != nil {
			time.AfterFunc(time.Second, func() { notify(c.sendNotify) })
			return
		}
	}
	if e.CMID != "" {
		c.confirm(e.CMID)
	}
	c.emit(e)
}

// expireUnconfirmed marks messages whose echo is overdue for a resend.
func (c *Client) expireUnconfirmed() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.outbox {
		if m.published && time.Since(m.sentAt) > c.opts.ResendAfter {
			m.published = false
		}
	}
}

// publishPending publishes outbox commands not yet sent on this
// connection, in order, within the window.
func (c *Client) publishPending(cn *conn) {
	now := time.Now()
	for {
		c.mu.Lock()
		var m *outMsg
		if c.inflight < c.opts.Window {
			for _, o := range c.outbox {
				if !o.published {
					if now.Before(o.notBefore) {
						break // keep the order: wait for the retry
					}
					m = o
					break
				}
			}
		}
		if m == nil {
			c.mu.Unlock()
			return
		}
		m.published = true
		resent := m.sends > 0
		m.sends++
		m.sentAt = now
		c.inflight++
		c.mu.Unlock()
		tok := cn.c.Publish(c.up(topics.UpMsg), c.qos, false, m.payload)
		c.stats.published.Add(1)
		if resent {
			c.stats.resent.Add(1)
		}
		go func() {
			// Free the window slot once acknowledged, or when the
			// connection ends (its acknowledgement will never come).
			select {
			case <-tok.Done():
			case <-cn.done:
			}
			c.mu.Lock()
			if c.cur == cn {
				c.inflight--
			}
			c.mu.Unlock()
			notify(c.sendNotify)
		}()
	}
}
