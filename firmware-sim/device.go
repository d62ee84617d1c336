package firmwaresim

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/tern-im/tern/client"
	"github.com/tern-im/tern/topics"
)

// Sentinel errors of the package.
var (
	// ErrNoMessaging means the broker accepted the connection but did not
	// answer hello: it has no messaging layer (or is not Tern).
	ErrNoMessaging = client.ErrNoMessaging
	// ErrRPCTimeout is an RPC that got no reply in time.
	ErrRPCTimeout = client.ErrTimeout
)

// Credentials are one simulated device's identity.
type Credentials struct {
	UID   string `json:"uid"`
	DID   string `json:"did"`
	Token string `json:"token"`
}

// ClientID is {uid}.{did}.
func (c Credentials) ClientID() string { return c.UID + "." + c.DID }

// DeviceOptions configure one IM device.
type DeviceOptions struct {
	Index int // the device's index in the run (the Accounting key)
	Creds Credentials
	// Dial opens the transport to the broker (directly or through a Link).
	Dial func() (net.Conn, error)
	// QoS is the QoS of upstream messages and of the own subscription.
	QoS byte
	// CBOR asks for CBOR events in hello.
	CBOR bool
	// Clean asks for a clean session at every connect.
	Clean bool
	// Window bounds unacknowledged QoS 1 publishes (below the broker's
	// receive maximum).
	Window int
	// RPCTimeout bounds every RPC; hello failing with it means the broker
	// has no messaging layer.
	RPCTimeout time.Duration
	// ResendAfter republishes a message whose echo has not arrived this
	// long after its last PUBLISH (the server dedupes on cmid and sends
	// the original event again). 0 means 5s.
	ResendAfter time.Duration
	// Replay makes a fresh device sync its user's whole stream from 0;
	// by default it starts at the us_head of its first hello, as a device
	// that restored its position would (history is not this run's load).
	Replay bool
	// RunID makes cmids unique across runs of the same device file, and
	// tells this run's messages from earlier ones.
	RunID string
	// Acc receives everything the device applies.
	Acc *Accounting
	// OnPresence, if set, gets every presence payload received.
	OnPresence func(topic string, payload []byte)
	// ExtraSubs are subscribed after the own filter on every connection
	// (e.g. contacts' im/p/{uid}); refusals are ignored.
	ExtraSubs []string
}

// Device is one simulated IM device: a client.Client (which speaks
// PROTOCOL §3–§9) whose events feed the run's Accounting.
type Device struct {
	opts  DeviceOptions
	c     *client.Client
	nextN atomic.Uint64
}

// NewDevice returns an unconnected device.
func NewDevice(o DeviceOptions) (*Device, error) {
	d := &Device{opts: o}
	co := client.Options{
		Dial: o.Dial, UID: o.Creds.UID, DID: o.Creds.DID, Secret: o.Creds.Token,
		CBOR: o.CBOR, QoS0: o.QoS == 0, PersistentSession: !o.Clean,
		Window: o.Window, RPCTimeout: o.RPCTimeout, ResendAfter: o.ResendAfter,
		StartAtHead: !o.Replay, Subscribe: o.ExtraSubs,
		OnEvent:  d.onEvent,
		OnOnline: o.Acc.CatchUp,
	}
	if o.OnPresence != nil {
		pres := topics.Presence("")
		co.OnRetained = func(topic string, p []byte) {
			if strings.HasPrefix(topic, pres) {
				o.OnPresence(topic, p)
			}
		}
	}
	c, err := client.New(co)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", o.Creds.ClientID(), err)
	}
	d.c = c
	return d, nil
}

// Run keeps the device connected until ctx is done (client.Client.Run).
func (d *Device) Run(ctx context.Context) error { return d.c.Run(ctx) }

// OnlineSince returns when the device last became online (zero if never).
func (d *Device) OnlineSince() time.Time { return d.c.OnlineSince() }

// SyncNow asks the online device to sync now and returns a channel that
// gets the result.
func (d *Device) SyncNow() <-chan error { return d.c.SyncNow() }

// Err returns the last error that ended a connection attempt, if any.
func (d *Device) Err() error { return d.c.Err() }

// Subscribe adds a subscription on the current connection (and, through
// ExtraSubs, on later ones); for filters that only become allowed after
// setup, such as a new contact's presence.
func (d *Device) Subscribe(filter string) error { return d.c.Subscribe(filter) }

// Online reports whether the device is connected and synced.
func (d *Device) Online() bool { return d.c.Online() }

// Outbox returns the number of messages not yet confirmed by their echo.
func (d *Device) Outbox() int { return d.c.Outbox() }

// LastUS returns the last stream position the device applied.
func (d *Device) LastUS() uint64 { return d.c.Cursor() }

// Stats returns the device's protocol counters.
func (d *Device) Stats() client.Stats { return d.c.Stats() }

// Call runs one RPC on the current connection (for provisioning and
// scenario setup) and decodes the result into out.
func (d *Device) Call(ctx context.Context, op string, args, out any) error {
	return d.c.Call(ctx, op, args, out)
}

// Send queues a message to `to` (a uid or a cv) for recipients (device
// indexes, for the accounting). It never blocks on the network.
func (d *Device) Send(to string, recipients []int, bodySize int) {
	n := d.nextN.Add(1)
	st := Stamp{Run: d.opts.RunID, Sender: d.opts.Index, N: n, SentAt: time.Now()}
	d.opts.Acc.Sent(d.opts.Index, n, recipients)
	cmid := d.opts.RunID + "-" + strconv.FormatUint(n, 10)
	if _, err := d.c.SendMsg(client.Outgoing{To: to, B: st.TextBody(bodySize), CMID: cmid}); err != nil {
		panic(err) // only ids can fail to encode, and there are none
	}
}

// SetPresence publishes a presence status (§8) if online.
func (d *Device) SetPresence(status string) bool {
	return d.c.Online() && d.c.SetPresence(status, "") == nil
}

// onEvent runs on the client's goroutine, in stream order.
func (d *Device) onEvent(e client.Event) {
	acc, i := d.opts.Acc, d.opts.Index
	switch ev := e.(type) {
	case *client.Reset:
		if ev.Hole {
			acc.Add(func(c *Counters) { c.OutOfOrder++ })
		}
		acc.ResetStream(i, ev.US)
	case *client.Message:
		cr := d.opts.Creds
		if ev.From == cr.UID && ev.FD == cr.DID {
			acc.StreamEvent(i, ev.US)
			return
		}
		st, err := ParseTextBody(ev.B)
		if err != nil || st.Run != d.opts.RunID {
			// Not a message of this run (another client, an earlier run).
			acc.StreamEvent(i, ev.US)
			return
		}
		acc.Applied(i, Delivery{
			Sender: st.Sender, N: st.N, CV: ev.CV, Seq: ev.Seq, US: ev.US,
			SentAt: st.SentAt, At: time.Now(),
		})
	case client.StreamEvent:
		acc.StreamEvent(i, ev.Stream().US)
	}
}
