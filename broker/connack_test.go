package broker_test

import (
	"errors"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/tern-im/tern/broker"
	"github.com/tern-im/tern/broker/brokertest"
	"github.com/tern-im/tern/internal/config"
)

// connect311 sends one MQTT 3.1.1 CONNECT, built with paho's packet codec,
// and returns the CONNACK return code. passFlag sets the password flag
// even for an empty password (paho's client never does; mosquitto_pub
// -P "" does).
func connect311(t *testing.T, b *brokertest.Broker, clientID, user, pass string, passFlag bool) byte {
	t.Helper()
	nc, err := net.DialTimeout("tcp", b.Addr(broker.ListenerMQTT), brokertest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if err := nc.SetDeadline(time.Now().Add(brokertest.Timeout)); err != nil {
		t.Fatal(err)
	}
	pk := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	pk.ProtocolName, pk.ProtocolVersion = "MQTT", 4
	pk.CleanSession, pk.Keepalive = true, 30
	pk.ClientIdentifier = clientID
	pk.UsernameFlag, pk.Username = user != "", user
	pk.PasswordFlag, pk.Password = passFlag || pass != "", []byte(pass)
	if err := pk.Write(nc); err != nil {
		t.Fatal(err)
	}
	rp, err := packets.ReadPacket(nc)
	if err != nil {
		t.Fatalf("read CONNACK: %v", err)
	}
	ack, ok := rp.(*packets.ConnackPacket)
	if !ok {
		t.Fatalf("got %T, want CONNACK", rp)
	}
	return ack.ReturnCode
}

// TestConnack311ReturnCodes checks that every refusal a 3.1.1 client can
// meet is a 3.1.1 return code (4 bad user name or password, 5 not
// authorized), never an MQTT 5 reason code. Before the codes were mapped
// in one place, an empty password with the password flag set got 130
// (mochi's MQTT 5 "protocol error").
func TestConnack311ReturnCodes(t *testing.T) {
	t.Parallel()
	b := brokertest.Start(t, func(c *config.Config) { c.Auth.MaxFailures = 100 })
	b.AddUser("alice", pw)
	b.AddUser("bob", pw)
	b.AddUser("dave", pw)
	if err := b.Accounts().SetDisabled("dave", true); err != nil {
		t.Fatal(err)
	}
	const (
		accepted    = packets.Accepted
		badCreds    = packets.ErrRefusedBadUsernameOrPassword
		notAuthed   = packets.ErrRefusedNotAuthorised
		madeUpToken = "tt_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
	)
	tests := []struct {
		name             string
		client, user, pw string
		passFlag         bool
		want             byte
	}{
		{"accepted", "alice.p1", "alice", pw, true, accepted},
		{"wrong password", "alice.p1", "alice", "wrong-password", true, badCreds},
		{"empty password with flag", "alice.p1", "alice", "", true, badCreds},
		{"no password", "alice.p1", "alice", "", false, badCreds},
		{"unknown user", "mallory.p1", "mallory", pw, true, badCreds},
		{"made-up token", "alice.p1", "alice", madeUpToken, true, notAuthed},
		{"client id of another user", "bob.p1", "alice", pw, true, notAuthed},
		{"disabled", "dave.p1", "dave", pw, true, notAuthed},
		{"anonymous", "anon1", "", "", false, notAuthed},
	}
	for _, tt := range tests {
		if got := connect311(t, b, tt.client, tt.user, tt.pw, tt.passFlag); got != tt.want {
			t.Errorf("%s: return code %d, want %d", tt.name, got, tt.want)
		}
	}
	// paho's own client reports them as the 3.1.1 refusals.
	err := b.TryConnect(b.ClientOptions("alice.p1", "alice", ""))
	if !errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
		t.Errorf("paho with empty password: %v", err)
	}

	// Throttled (a budget of 2 failures): still a 3.1.1 code.
	tb := brokertest.Start(t, func(c *config.Config) {
		c.Auth.MaxFailures = 2
		c.Auth.Lockout = time.Hour
		c.Auth.MaxLockout = time.Hour
	})
	tb.AddUser("bob", pw)
	for range 2 {
		if got := connect311(t, tb, "bob.p1", "bob", "guess", true); got != badCreds {
			t.Fatalf("guess: return code %d, want %d", got, badCreds)
		}
	}
	if got := connect311(t, tb, "bob.p1", "bob", pw, true); got != notAuthed {
		t.Errorf("throttled: return code %d, want %d", got, notAuthed)
	}
}
